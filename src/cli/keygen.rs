//! `synod keygen`: a new random key, as hex, for `synod serve --key-file` (the peer
//! key) or `--client-key-file` (the client key): 32 bytes from the OS.

use std::process::ExitCode;

use synod::transport::auth::AuthKey;

/// Prints a new key on stdout.
pub fn main() -> Result<ExitCode, String> {
    let key = AuthKey::generate().map_err(|e| e.to_string())?;
    println!("{}", key.to_hex());
    Ok(ExitCode::SUCCESS)
}
