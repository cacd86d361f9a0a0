//! `node-agent` binary: decides the mode and hands over to the library.

fn main() {
    if cairn_node_agent::is_init() {
        let mut console = std::io::stdout();
        if cairn_node_agent::in_initramfs() {
            cairn_node_agent::run_initramfs(&mut console);
        }
        cairn_node_agent::run_system();
    }
    println!("{}", cairn_node_agent::banner());
}
