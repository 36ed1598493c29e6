import BalancerCLI

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
enum UMSBalancerMain {
    static func main() async {
        // First thing: a SIGHUP during start-up must not kill the process (its default action).
        signal(SIGHUP, SIG_IGN)
        await UMSBalancerCommand.main()
    }
}
