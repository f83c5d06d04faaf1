use std::process::ExitCode;

fn main() -> ExitCode {
    nmdb_server::run::main()
}
