//! The no-op run from every pulled image by the `kubelet` strategy.
//!
//! - `quayctl-noop`: exit 0 at once (the image is on the node by then: the kubelet pulled it).
//! - `quayctl-noop --install DEST`: copy this binary to DEST (an emptyDir) and make it executable;
//!   the init container does this from the controller's image, which has no shell or `cp`.
//!
//! Built fully static (`-C target-feature=+crt-static`), so it runs in distroless and scratch images.

use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => ExitCode::SUCCESS,
        [flag, dest] if flag == "--install" => match install(dest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("quayctl-noop: cannot install to {dest}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: quayctl-noop [--install DEST]");
            ExitCode::from(2)
        }
    }
}

fn install(dest: &str) -> std::io::Result<()> {
    let me = std::env::current_exe()?;
    std::fs::copy(me, dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
}
