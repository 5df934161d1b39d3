//! The deployment files. Every manifest under deploy/kubernetes passes Kubernetes' published
//! schemas (kubernetes-validate from PyPI, strict: an unknown field fails), and the files
//! agree with each other and with the binary: a StatefulSet pod's arguments, environment,
//! ConfigMap and job Secret, given to `tsmig-job config`, make pod tsmig-2 process 2 of
//! the replicas, with the others as its peers; the probes reach the status endpoint the
//! configuration serves; the Dockerfile ships this binary as the manifests' user. No
//! cluster and no Docker engine run here: what a real cluster adds is not tested.

mod common;

use common::*;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The Kubernetes versions validated against: the oldest and newest the validator knows.
const VERSIONS: &[&str] = &["1.25.0", "1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// kubernetes-validate, which scripts/test.sh installs from PyPI into a venv.
fn validator() -> PathBuf {
    let path = std::env::var("TSMIG_K8S_VALIDATE").unwrap_or_else(|_| {
        panic!(
            "TSMIG_K8S_VALIDATE is not set: it names the kubernetes-validate program (PyPI \
             `kubernetes-validate`), which scripts/test.sh installs into \
             $TSMIG_SERVICES_DIR/k8s-validate-venv; run the tests with scripts/test.sh, or \
             export TSMIG_K8S_VALIDATE=/tmp/tsmig-services/k8s-validate-venv/bin/kubernetes-validate"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "TSMIG_K8S_VALIDATE={} does not exist (scripts/test.sh installs it)",
        path.display()
    );
    path
}

/// Every manifest file and its documents.
fn manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let documents = serde_yaml::Deserializer::from_str(&text)
                .map(|d| Value::deserialize(d).unwrap())
                .filter(|v| !v.is_null())
                .collect();
            (path, documents)
        })
        .collect()
}

/// The one resource of `kind` named `name`.
fn resource(kind: &str, name: &str) -> Value {
    let found: Vec<Value> = manifests()
        .into_iter()
        .flat_map(|(_, docs)| docs)
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} expected");
    found[0].clone()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not text: {other:?}"),
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v:?}"))
}

/// A container's port number by name.
fn port(container: &Value, name: &str) -> u64 {
    let ports = container["ports"].as_sequence().unwrap();
    let found = ports
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {ports:?}"));
    number(&found["containerPort"])
}

/// The mount path of the volume that `pod` fills from `source` (`configMap`, `secret`,
/// `persistentVolumeClaim`), or of the volume named `source` (a claim template).
fn mount_of(pod: &Value, source: &str) -> String {
    let name = pod["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| !v[source].is_null())
        .map(|v| text(&v["name"]))
        .unwrap_or_else(|| source.to_string());
    let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
    text(
        &mounts
            .iter()
            .find(|m| m["name"] == name.as_str())
            .unwrap_or_else(|| panic!("volume {name} is not mounted"))["mountPath"],
    )
}

/// Runs `tsmig-job config` as `pod`'s container would run its job, on `hostname`: its
/// arguments, its environment and secrets, the ConfigMap and the job Secret written out
/// where the mounts put them (here: a scratch directory).
fn config_of_pod(pod: &Value, hostname: &str) -> Output {
    let scratch = scratch(&unique("pod"));
    let container = &pod["containers"][0];
    let conf_mount = mount_of(pod, "configMap");
    let job_mount = mount_of(pod, "secret");
    let configmap = resource(
        "ConfigMap",
        &text(
            &pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| !v["configMap"].is_null())
                .unwrap()["configMap"]["name"],
        ),
    );
    let secret = resource(
        "Secret",
        &text(
            &pod["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| !v["secret"].is_null())
                .unwrap()["secret"]["secretName"],
        ),
    );
    let conf = scratch.join("conf");
    let job = scratch.join("job");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&job).unwrap();
    for (key, value) in configmap["data"].as_mapping().unwrap() {
        std::fs::write(conf.join(text(key)), text(value)).unwrap();
    }
    for (key, value) in secret["stringData"].as_mapping().unwrap() {
        std::fs::write(job.join(text(key)), text(value)).unwrap();
    }
    let moved = |arg: String| {
        arg.replace(&job_mount, job.to_str().unwrap())
            .replace(&conf_mount, conf.to_str().unwrap())
    };
    let mut command = tsmig();
    command
        .current_dir(&scratch)
        .env_remove("TSMIG_CONF_DIR")
        .env_remove("TSMIG_PROCESS")
        .env_remove("TSMIG_STATUS_TOKEN")
        .env_remove("RUST_LOG")
        .env("HOSTNAME", hostname);
    for env in container["env"].as_sequence().into_iter().flatten() {
        command.env(text(&env["name"]), moved(text(&env["value"])));
    }
    for from in container["envFrom"].as_sequence().into_iter().flatten() {
        let secret = resource("Secret", &text(&from["secretRef"]["name"]));
        for (key, value) in secret["stringData"].as_mapping().unwrap() {
            command.env(text(key), text(value));
        }
    }
    let args: Vec<String> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| moved(text(a)))
        .collect();
    command.arg("config").args(&args).output().unwrap()
}

/// `tsmig-job config`'s key → value.
fn values(out: &Output) -> BTreeMap<String, String> {
    assert_ok(out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (pair, _) = l.split_once("  # ").unwrap();
            let (key, value) = pair.split_once(": ").unwrap();
            (key.to_string(), value.trim_end().to_string())
        })
        .collect()
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas() {
    let validator = validator();
    let files: Vec<PathBuf> = manifests().into_iter().map(|(p, _)| p).collect();
    let resources: usize = manifests().iter().map(|(_, d)| d.len()).sum();
    for version in VERSIONS {
        let out = std::process::Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "Kubernetes {version}:\n{said}");
        assert_eq!(
            said.matches(" passed for resource ").count(),
            resources,
            "every resource checked against {version}:\n{said}"
        );
    }
    // The validator does check: a misspelt field fails it.
    let wrong = scratch(&unique("wrong-manifest")).join("statefulset.yaml");
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/statefulset.yaml")).unwrap();
    std::fs::write(&wrong, text.replace("  replicas:", "  replica:")).unwrap();
    let out = std::process::Command::new(&validator)
        .arg("--strict")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("'replica' was unexpected"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_statefulset_pod_is_the_process_of_its_ordinal_with_the_others_as_peers() {
    let set = resource("StatefulSet", "tsmig");
    let name = text(&set["metadata"]["name"]);
    let replicas = number(&set["spec"]["replicas"]);
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let headless = resource("Service", &text(&set["spec"]["serviceName"]));
    assert!(replicas > 1);
    assert_eq!(set["spec"]["podManagementPolicy"], "Parallel");

    // The headless Service names every pod, ready or not, at the cluster port.
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let cluster_port = port(container, "cluster");
    let service_port = &headless["spec"]["ports"][0];
    assert_eq!(number(&service_port["port"]), cluster_port);
    assert_eq!(service_port["targetPort"], "cluster");
    for (key, value) in headless["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&set["spec"]["template"]["metadata"]["labels"][key], value);
        assert_eq!(&set["spec"]["selector"]["matchLabels"][key], value);
    }

    let peers: Vec<String> = (0..replicas)
        .map(|i| {
            format!(
                "{name}-{i}.{}:{cluster_port}",
                text(&headless["metadata"]["name"])
            )
        })
        .collect();
    for ordinal in 0..replicas {
        let shown = values(&config_of_pod(pod, &format!("{name}-{ordinal}")));
        assert_eq!(shown["cluster.process"], ordinal.to_string());
        assert_eq!(shown["cluster.processes"], replicas.to_string());
        assert_eq!(shown["cluster.hosts"], format!("[{}]", peers.join(", ")));
        assert_eq!(shown["cluster.listen"], format!("0.0.0.0:{cluster_port}"));
        // The state goes to the pod's volume; the token comes from the Secret.
        let state = mount_of(pod, "state");
        assert!(shown["state.dir"].starts_with(&state), "{shown:?}");
        assert!(
            shown["checkpoint.store"].starts_with(&format!("file:{state}/")),
            "{shown:?}"
        );
        assert_eq!(shown["status.token"], "***");
        // The endpoints listen on the ports the probes and Services use.
        assert_eq!(
            shown["status.addr"],
            format!("0.0.0.0:{}", port(container, "status"))
        );
        assert_eq!(
            shown["metrics.addr"],
            format!("0.0.0.0:{}", port(container, "metrics"))
        );
        // A stop drains within the grace period.
        let stop = humantime::parse_duration(&shown["stop_timeout"]).unwrap();
        assert!(stop.as_secs() < number(&pod["terminationGracePeriodSeconds"]));
    }
    // A pod beyond the configured processes is refused, naming the key.
    let out = config_of_pod(pod, &format!("{name}-{replicas}"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `cluster.process`") && stderr.contains("is not below processes"),
        "{stderr}"
    );

    // Liveness is /health, readiness /ready, both on the status port.
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "status");
    }
    // The status Service reaches process 0's status and metrics ports.
    let status = resource("Service", "tsmig-status");
    assert_eq!(
        status["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
        format!("{name}-0").as_str()
    );
    for p in status["spec"]["ports"].as_sequence().unwrap() {
        let target = text(&p["targetPort"]);
        assert_eq!(number(&p["port"]), port(container, &target));
    }
}

#[test]
fn the_backfill_job_is_one_process_with_the_same_configuration() {
    let job = resource("Job", "tsmig-backfill");
    let pod = &job["spec"]["template"]["spec"];
    let shown = values(&config_of_pod(pod, "tsmig-backfill-x7k2p"));
    assert_eq!(shown["cluster.processes"], "1");
    assert_eq!(shown["cluster.process"], "0");
    assert_eq!(shown["cluster.hosts"], "none (one process)");
    let state = mount_of(pod, "persistentVolumeClaim");
    assert!(
        shown["checkpoint.store"].starts_with(&format!("file:{state}/")),
        "{shown:?}"
    );
    // Its state is a claim of its own, defined beside it.
    let claim = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .unwrap()
        .to_string();
    resource("PersistentVolumeClaim", &claim);
    assert_eq!(
        pod["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/health"
    );

    // The job file in the Secret is a valid job.
    let secret = resource("Secret", "tsmig-job");
    let file = scratch(&unique("secret-job")).join("job.yaml");
    std::fs::write(&file, text(&secret["stringData"]["job.yaml"])).unwrap();
    assert_ok(&run(&["validate", "--config", file.to_str().unwrap()]));
}

#[test]
fn the_dockerfile_ships_this_binary_in_slim_debian_as_the_manifests_user() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let instructions: Vec<(&str, &str)> = dockerfile
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.is_empty())
        .filter_map(|l| l.split_once(' '))
        .collect();
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| *i == word)
            .map(|(_, rest)| *rest)
            .collect()
    };
    assert_eq!(all("FROM"), ["debian:bookworm-slim"]);
    // The binary cargo builds (this constant exists only for a binary named tsmig-job).
    let built = Path::new(env!("CARGO_BIN_EXE_tsmig-job"));
    let binary = format!(
        "target/release/{}",
        built.file_name().unwrap().to_str().unwrap()
    );
    let copied = all("COPY")
        .into_iter()
        .find(|c| c.starts_with(&binary))
        .unwrap_or_else(|| panic!("the Dockerfile copies no {binary}"));
    let installed = copied.split_whitespace().nth(1).unwrap();
    assert_eq!(all("ENTRYPOINT"), [format!("[\"{installed}\"]").as_str()]);
    let user = all("USER");
    assert_eq!(user.len(), 1);
    assert_ne!(user[0], "root");
    assert_ne!(user[0], "0");
    // The context it needs passes .dockerignore.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for path in [binary.as_str(), "config/tsmig.yaml"] {
        assert!(ignore.lines().any(|l| l == format!("!{path}")), "{path}");
    }
    // Every pod runs this image as that user, and the image's configuration directory is
    // where the ConfigMap is mounted.
    let conf_env = all("ENV")
        .into_iter()
        .find_map(|e| e.strip_prefix("TSMIG_CONF_DIR="))
        .unwrap();
    for (kind, name) in [("StatefulSet", "tsmig"), ("Job", "tsmig-backfill")] {
        let pod = resource(kind, name)["spec"]["template"]["spec"].clone();
        assert_eq!(
            text(&pod["securityContext"]["runAsUser"]),
            user[0],
            "{kind}"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(mount_of(&pod, "configMap"), conf_env, "{kind}");
        assert!(text(&pod["containers"][0]["image"]).starts_with("tsmig:"));
    }
}
