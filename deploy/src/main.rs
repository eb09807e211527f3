//! `mercato-deploy`: the network launcher. Not built yet; it says so instead of pretending.

fn main() -> std::process::ExitCode {
    eprintln!(
        "mercato-deploy: the network launcher is not built yet.\n\
         It needs the CA server, the orderer and the peer, which are still being built.\n\
         Today you can run the tests (cargo test --workspace --locked) and the crypto benchmark\n\
         (cargo bench -p mercato-ca --bench crypto)."
    );
    std::process::ExitCode::from(2)
}
