//! `--version` names the crate version and the source revision it was built from (build.rs).

use std::process::Command;

#[test]
fn version_prints_the_crate_version_and_the_revision_built_from() {
    let out = Command::new(env!("CARGO_BIN_EXE_spark-admission"))
        .arg("--version")
        .output()
        .expect("running spark-admission --version");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let revision = env!("SPARK_ADMISSION_REVISION");
    assert_eq!(
        printed.trim_end(),
        format!(
            "spark-admission {} (revision {revision})",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        revision == "unknown"
            || (revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
        "revision {revision:?} is neither a git commit nor unknown"
    );
}

/// In a git checkout, without the override, the revision is HEAD: build.rs re-runs when a
/// commit or checkout moves HEAD, so it never reports the commit before.
#[test]
fn in_a_git_checkout_the_revision_is_head() {
    if std::env::var_os("SPARK_ADMISSION_REVISION").is_some() {
        eprintln!("SPARK_ADMISSION_REVISION is set: the revision is that, not git's");
        return;
    }
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let head = match head {
        Ok(head) if head.status.success() => head,
        _ => {
            eprintln!("no git checkout here (a source archive?): nothing to compare with");
            return;
        }
    };
    let head = String::from_utf8(head.stdout).expect("UTF-8");
    assert_eq!(env!("SPARK_ADMISSION_REVISION"), head.trim());
}
