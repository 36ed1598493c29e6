@main
enum NodeSimMain {
    static func main() {}
}
