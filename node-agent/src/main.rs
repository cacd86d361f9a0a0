//! `node-agent` binary: decides the mode and hands over to the library.

fn main() {
    if cairn_node_agent::is_init() {
        cairn_node_agent::run_init(&mut std::io::stdout());
    }
    println!("{}", cairn_node_agent::banner());
}
