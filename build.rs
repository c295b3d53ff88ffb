//! Sets `CONVOSCOPE_REVISION`, the git revision the binary is built from, for
//! `convoscope_build_info`: the environment's value if set (a build outside a clone), else
//! `git rev-parse`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CONVOSCOPE_REVISION");
    let revision = std::env::var("CONVOSCOPE_REVISION").ok().filter(|r| !r.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=CONVOSCOPE_REVISION={}", revision.as_deref().unwrap_or("unknown"));
    // Built again when HEAD moves: HEAD itself on a checkout, the branch's ref on a commit.
    let head = Path::new(".git/HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(r) =
            std::fs::read_to_string(head).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        {
            let path = format!(".git/{r}");
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
