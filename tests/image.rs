//! The two definitions of the image agree: `Dockerfile` (multi-stage, for Docker users) and
//! `release/Containerfile` (built offline from the static binary by `release/image.sh`, checked
//! by `tests/image/check.sh` in CI, published by the release workflow). Their final stages must
//! be the same instruction for instruction, except where the one binary is copied from.

use std::fs;
use std::path::PathBuf;

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone, PartialEq)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of a Dockerfile: comments and blank lines dropped (also inside a
/// continued instruction, as Docker does), `\` continuations joined with single spaces.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (part, continued) = match line.strip_suffix('\\') {
            Some(part) => (part.trim_end(), true),
            None => (line, false),
        };
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(part);
        if !continued {
            let (keyword, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
            out.push(Instruction {
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_string(),
            });
            current.clear();
        }
    }
    assert!(current.is_empty(), "a continuation at the end of the file");
    out
}

/// The instructions from the last `FROM` on.
fn final_stage(path: &str) -> Vec<Instruction> {
    let all = instructions(&repo_file(path));
    let from = all
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .unwrap_or_else(|| panic!("{path} has no FROM"));
    all[from..].to_vec()
}

/// The final stage with its one COPY reduced to the destination, and that COPY's source.
fn without_copy_source(path: &str) -> (Vec<Instruction>, String) {
    let mut stage = final_stage(path);
    let copies: Vec<usize> = (0..stage.len())
        .filter(|&i| matches!(stage[i].keyword.as_str(), "COPY" | "ADD"))
        .collect();
    assert_eq!(copies.len(), 1, "{path}: one COPY, the binary only");
    let copy = &mut stage[copies[0]];
    assert_eq!(copy.keyword, "COPY", "{path}: COPY, not ADD");
    let words: Vec<&str> = copy.args.split_whitespace().collect();
    let (source, destination) = match words.as_slice() {
        [flags @ .., source, destination] => {
            (format!("{} {source}", flags.join(" ")), *destination)
        }
        _ => panic!("{path}: COPY {}", copy.args),
    };
    copy.args = destination.to_string();
    (stage, source.trim().to_string())
}

#[test]
fn dockerfile_and_containerfile_final_stages_differ_only_in_where_the_binary_comes_from() {
    let (docker, docker_source) = without_copy_source("Dockerfile");
    let (offline, offline_source) = without_copy_source("release/Containerfile");
    assert_eq!(
        docker, offline,
        "the final stage of Dockerfile and release/Containerfile must be the same"
    );
    assert_eq!(docker_source, "--from=build /out/spark-admission");
    assert_eq!(offline_source, "spark-admission");
}

#[test]
fn the_image_is_the_binary_alone_on_scratch_run_by_a_numeric_user() {
    let stage = final_stage("release/Containerfile");
    let find = |keyword: &str| -> Vec<&str> {
        stage
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    };
    assert_eq!(find("FROM"), ["scratch"]);
    assert_eq!(find("COPY"), ["spark-admission /spark-admission"]);
    assert_eq!(find("ENTRYPOINT"), [r#"["/spark-admission"]"#]);
    assert_eq!(find("CMD"), [r#"["serve"]"#]);
    assert_eq!(find("EXPOSE"), ["8443 8080"]);
    // The Deployment's runAsUser/runAsGroup (tests/manifests.rs checks the Dockerfile's USER
    // against the rendered Deployment).
    assert_eq!(find("USER"), ["65532:65532"]);
    assert!(
        find("RUN").is_empty() && find("ENV").is_empty(),
        "nothing but the binary"
    );
}

#[test]
fn the_version_label_defaults_to_the_crate_version_and_the_revision_is_labelled() {
    for path in ["Dockerfile", "release/Containerfile"] {
        let stage = final_stage(path);
        let args: Vec<&str> = stage
            .iter()
            .filter(|i| i.keyword == "ARG")
            .map(|i| i.args.as_str())
            .collect();
        assert!(
            args.contains(&format!("VERSION={}", env!("CARGO_PKG_VERSION")).as_str()),
            "{path}: ARG VERSION must default to Cargo.toml's version: {args:?}"
        );
        assert!(args.contains(&"REVISION=unknown"), "{path}: {args:?}");
        let labels: String = stage
            .iter()
            .filter(|i| i.keyword == "LABEL")
            .map(|i| i.args.as_str())
            .collect();
        for want in [
            r#"org.opencontainers.image.version="${VERSION}""#,
            r#"org.opencontainers.image.revision="${REVISION}""#,
        ] {
            assert!(labels.contains(want), "{path}: no {want} in {labels}");
        }
    }
}

#[test]
fn the_dockerfile_builds_the_static_binary_like_the_release_script() {
    let build: Vec<Instruction> = instructions(&repo_file("Dockerfile"))
        .into_iter()
        .take_while(|i| !(i.keyword == "FROM" && i.args == "scratch"))
        .collect();
    let run = build
        .iter()
        .find(|i| i.keyword == "RUN")
        .expect("a RUN in the build stage");
    let script = repo_file("release/static-binary.sh");
    for flag in [
        r#"RUSTFLAGS="-C target-feature=+crt-static""#,
        "--release --locked --target",
    ] {
        assert!(run.args.contains(flag), "Dockerfile build lacks {flag}");
        assert!(
            script.contains(flag),
            "release/static-binary.sh lacks {flag}"
        );
    }
    assert!(
        run.args.contains(r#"SPARK_ADMISSION_REVISION="$REVISION""#),
        "the Docker build has no .git: the revision must come from the build argument"
    );
}

#[test]
fn instructions_join_continuations_and_skip_comments() {
    let parsed = instructions(
        "# syntax=docker/dockerfile:1\nFROM scratch\nLABEL a=1 \\\n  # inside\n  b=2\n\nuser 1:1\n",
    );
    let want = [("FROM", "scratch"), ("LABEL", "a=1 b=2"), ("USER", "1:1")];
    assert_eq!(
        parsed,
        want.map(|(k, a)| Instruction {
            keyword: k.to_string(),
            args: a.to_string()
        })
    );
}

/// A remote base at tag vX.Y.Z (`…//manifests?ref=vX.Y.Z`) must name that version's image.
#[test]
fn the_base_names_the_image_of_the_crate_version() {
    let kustomization: serde_json::Value =
        serde_saphyr::from_str(&repo_file("manifests/kustomization.yaml"))
            .expect("manifests/kustomization.yaml parses");
    let images = kustomization["images"].as_array().expect("an images list");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], "spark-admission");
    assert_eq!(images[0]["newTag"], env!("CARGO_PKG_VERSION"));
}
