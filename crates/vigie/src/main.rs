//! The `vigie` binary: everything lives in `vigie-cli`.

fn main() -> std::process::ExitCode {
    vigie_cli::main()
}
