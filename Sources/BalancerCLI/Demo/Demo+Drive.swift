import BalancerCore
import BalancerNIO
import Foundation

/// `ums-balancer demo --drive`: the balancer drives the update through `update start`, as an
/// operator would start it, instead of the demo's scripted admin.
extension Demo {
    /// Shows the plan, starts the drive and waits until it has completed; throws when it is
    /// refused, stalls or ends otherwise.
    func drive(_ balancer: Balancer) async throws {
        let plan = await balancer.updatePlan()
        for check in plan.checks where check.result != .pass {
            screen.event("plan: \(check.result.rawValue) \(check.name): \(check.detail)")
        }
        screen.event("plan: \(plan.ready ? "ready" : "not ready"): \(plan.order.joined(separator: " -> "))")
        screen.event("operator: ums-balancer update start --version \(settings.toVersion)")
        do {
            _ = try await balancer.startUpdate(version: settings.toVersion, force: false, actor: "demo operator")
        } catch {
            throw DemoError("update start was refused: \(error)")
        }
        let deadline = ContinuousClock.now + .seconds(60) + settings.scaled(60)
        while true {
            let drive = await balancer.updateDrive()
            switch drive?.state {
            case .completed?: return
            case .stalled?, .aborted?, nil:
                throw DemoError("the driven update did not complete: \(drive?.summary ?? "no drive")")
            case .running?, .paused?:
                break
            }
            guard ContinuousClock.now < deadline else {
                throw DemoError("the driven update did not complete in time: \(drive?.summary ?? "")")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

extension DemoCluster {
    /// The install action a driven demo calls: the simulated node's own control endpoint, an
    /// install taking 3 s at speed 1; a canary gate the demo's few devices pass in a few seconds.
    func configureDrive(_ configuration: inout BalancerConfiguration, _ settings: Demo.Settings) {
        let seconds = String(format: "%.2f", 3 / settings.speed)
        configuration.install = InstallSettings(
            action: .url("http://{host}:\(ports.control)/control/install?version={version}&seconds=\(seconds)"))
        configuration.update.canaryConnections = max(3, settings.devices * 2)
        configuration.update.canaryTimeout = .seconds(60)
        configuration.update.installTimeout = .seconds(60)
    }
}
