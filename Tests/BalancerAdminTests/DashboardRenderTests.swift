import BalancerTesting
import Foundation
import Testing

@testable import BalancerAdmin

/// The dashboard's own script, run by Node.js against a small stand-in DOM and a `/status`
/// document: what an operator would read on the page.
@Suite(.timeLimit(.minutes(1)))
struct DashboardRenderTests {
    /// The text of the elements that show the update, after one refresh with `status`.
    func render(_ status: String) async throws -> [String: String] {
        let node = ["/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
        let program = try #require(
            node, "Node.js is needed to run the dashboard's script (Debian: nodejs; .ci/run installs it)")
        let html = DashboardPage.html
        let script = try #require(
            html.range(of: "<script>").flatMap { start in
                html.range(of: "</script>", range: start.upperBound..<html.endIndex).map {
                    String(html[start.upperBound..<$0.lowerBound])
                }
            })
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let file = try folder.write("dashboard.js", Self.domStandIn(status: status) + script + Self.report)
        let result = try await ProcessHarness.runProgram(at: program, [file])
        try #require(result.status == 0, "\(result.output)")
        let line = try #require(result.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }))
        return try JSONDecoder().decode([String: String].self, from: Data(line.utf8))
    }

    static func domStandIn(status: String) -> String {
        """
        "use strict";
        const elements = {};
        function makeElement(tag) {
          return { tag, textContent: "", className: "", children: [], style: {}, value: "",
            append(...items) { for (const item of items) this.children.push(typeof item === "string" ? { textContent: item } : item); },
            replaceChildren(...items) { this.children = []; this.append(...items); },
            replaceWith(other) { elements[this.id] = other; },
            addEventListener() {},
            get firstElementChild() { return this.children[0] || (this.children[0] = makeElement("div")); } };
        }
        globalThis.document = {
          getElementById(id) { return elements[id] || (elements[id] = Object.assign(makeElement("div"), { id })); },
          createElement: makeElement };
        globalThis.sessionStorage = { getItem() { return "token"; }, setItem() {} };
        globalThis.location = { hash: "", pathname: "/", search: "" };
        globalThis.history = { replaceState() {} };
        globalThis.setTimeout = () => {};
        const STATUS = \(status);
        globalThis.fetch = async (path) => ({ status: 200, ok: true,
          json: async () => path.startsWith("/status") ? STATUS : { events: [] } });

        """
    }

    static let report = """

        setImmediate(() => setImmediate(() => {
          const text = (id) => elements[id] ? elements[id].textContent : "";
          console.log(JSON.stringify({
            state: elements["update-state"].textContent, progress: text("progress-text"), summary: text("summary"),
            flags: elements["flags"].children.map((c) => c.textContent).join(" | "), lastRun: text("last-run"),
            drive: (elements["drive"] ? elements["drive"].children : [])
              .map((c) => c.textContent || c.children.map((part) => part.textContent).join("")).join(" | "),
            error: text("error") }));
        }));
        """

    static func status(update: String) -> String {
        """
        {"nodes": [{"id": "ums1", "mode": "update", "health": "up", "admin": "active", "version": "12.07.100",
                    "connections": 3, "mode_override": null, "reconnect_drain": false}],
         "update": \(update),
         "config": {"generation": 1, "last_reload": {"ok": true, "at": "2026-11-25T10:00:00Z", "error": null}},
         "balancer": {"connections": 3, "listeners": ["devices"]}}
        """
    }

    @Test func aFlaggedRunShowsEachFlag() async throws {
        let shown = try await render(
            Self.status(
                update: """
                    {"state": "in-progress", "target_version": "12.07.100", "updated": 1, "total": 3,
                     "summary": "update 12.07.100: 1 of 3 servers updated [install-overdue:ums2, overdue]",
                     "reconnects": {}, "flags": ["install-overdue:ums2", "overdue"], "last_run": null}
                    """))
        #expect(shown["error"] == "")
        #expect(shown["state"] == "in-progress")
        #expect(shown["flags"] == "flagged: install-overdue:ums2 | flagged: overdue")
        #expect(shown["lastRun"] == "")
    }

    @Test func aDrivenUpdateShowsEachStepDoneNowOrNextWithItsTimeAndTheEstimate() async throws {
        let step = { (node: String, role: String, phase: String, position: String, seconds: String, stalled: String) in
            """
            {"node": "\(node)", "role": "\(role)", "phase": "\(phase)", "position": "\(position)", "attempts": 1,
             "started_at": null, "back_at": null, "finished_at": null, "seconds": \(seconds), "canary_served": 2,
             "deadline": null, "stalled": \(stalled), "last_answer": null}
            """
        }
        let steps = [
            step("ums1", "update-mode", "done", "done", "8.25", "null"),
            step("ums2", "update-mode", "canary", "now", "4", #""served 2 of 20 device connections""#),
            step("ums3", "last", "pending", "next", "null", "null"),
        ]
        let shown = try await render(
            Self.status(
                update: """
                    {"state": "in-progress", "target_version": "12.07.100", "updated": 2, "total": 3,
                     "summary": "update 12.07.100: 2 of 3 servers updated", "reconnects": {},
                     "flags": ["drive-stalled:ums2"], "last_run": null,
                     "drive": {"state": "stalled", "target_version": "12.07.100", "starting_version": "12.06.100",
                               "summary": "drive 12.07.100: 1 of 3 servers done", "started_at": "2026-11-25T10:00:00Z",
                               "started_by": "admin-api 127.0.0.1:5000", "forced": false, "finished_at": null,
                               "reason": "ums2 stuck", "estimated_remaining_seconds": 12.5, "canary_connections": 20,
                               "steps": [\(steps.joined(separator: ","))],
                               "reconnect": {"position": "next", "started_at": null, "finished_at": null, "seconds": null}}}
                    """))
        #expect(shown["error"] == "")
        #expect(shown["flags"] == "flagged: drive-stalled:ums2")
        let lines = try #require(shown["drive"]).components(separatedBy: " | ")
        #expect(
            lines == [
                "driven update stalled to 12.07.100, started by admin-api 127.0.0.1:5000 — about 12.5s left — ums2 stuck",
                "done ums1: done (8.3s)",
                "now ums2: canary, 2 of 20 device connections (4.0s so far) — STALLED: served 2 of 20 device connections",
                "next ums3: last, renews the productive schema",
                "next reconnect: update-mode servers back to the productive database",
            ])
    }

    @Test func anIdleBalancerShowsHowTheLastRunEndedAndWho() async throws {
        let shown = try await render(
            Self.status(
                update: """
                    {"state": "idle", "target_version": null, "updated": 0, "total": 0,
                     "summary": "no update running; the last run ended ended-by-operator: ended by admin-api 127.0.0.1:5000",
                     "reconnects": {}, "flags": [],
                     "last_run": {"outcome": "ended-by-operator", "at": "2026-11-25T10:00:00Z",
                                  "reason": "ended by admin-api 127.0.0.1:5000", "target_version": "12.07.100",
                                  "starting_version": "12.06.100", "started_at": "2026-11-25T08:00:00Z",
                                  "by": "admin-api 127.0.0.1:5000"}}
                    """))
        #expect(shown["error"] == "")
        #expect(shown["progress"] == "no update running")
        #expect(shown["flags"] == "")
        let lastRun = try #require(shown["lastRun"])
        #expect(lastRun.hasPrefix("last run: ended-by-operator at "), "\(lastRun)")
        #expect(lastRun.hasSuffix(" by admin-api 127.0.0.1:5000 — ended by admin-api 127.0.0.1:5000"), "\(lastRun)")
    }
}
