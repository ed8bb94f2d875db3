use k8s_openapi::api::core::v1::Toleration;

use super::*;

fn toleration(
    key: &str,
    operator: &str,
    value: &str,
    effect: &str,
    secs: Option<i64>,
) -> Toleration {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: some(key),
        operator: some(operator),
        value: some(value),
        effect: some(effect),
        toleration_seconds: secs,
    }
}

const OOS: &str = "node.kubernetes.io/out-of-service";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

#[test]
fn which_tolerations_keep_a_pod_under_the_out_of_service_taint() {
    let t = toleration;
    let cases: Vec<(&str, Vec<Toleration>, bool)> = vec![
        ("no tolerations", vec![], false),
        (
            "tolerate everything (DaemonSets)",
            vec![t("", "Exists", "", "", None)],
            true,
        ),
        (
            "every NoExecute taint",
            vec![t("", "Exists", "", "NoExecute", None)],
            true,
        ),
        (
            "every NoSchedule taint only",
            vec![t("", "Exists", "", "NoSchedule", None)],
            false,
        ),
        (
            "the key, Exists",
            vec![t(OOS, "Exists", "", "", None)],
            true,
        ),
        (
            "the key, Exists, NoExecute",
            vec![t(OOS, "Exists", "", "NoExecute", None)],
            true,
        ),
        (
            "the key, Exists, NoSchedule",
            vec![t(OOS, "Exists", "", "NoSchedule", None)],
            false,
        ),
        (
            "the key, Equal nodeshutdown",
            vec![t(OOS, "Equal", "nodeshutdown", "NoExecute", None)],
            true,
        ),
        (
            "the key, no operator means Equal",
            vec![t(OOS, "", "nodeshutdown", "", None)],
            true,
        ),
        (
            "the key, Equal another value",
            vec![t(OOS, "Equal", "maintenance", "", None)],
            false,
        ),
        (
            "the key, Equal no value",
            vec![t(OOS, "Equal", "", "", None)],
            false,
        ),
        (
            "another key",
            vec![t(UNREACHABLE, "Exists", "", "NoExecute", None)],
            false,
        ),
        (
            "an unknown operator",
            vec![t(OOS, "Lt", "5", "", None)],
            false,
        ),
        (
            "the DaemonSet controller's defaults only",
            vec![
                t(UNREACHABLE, "Exists", "", "NoExecute", None),
                t(
                    "node.kubernetes.io/not-ready",
                    "Exists",
                    "",
                    "NoExecute",
                    None,
                ),
            ],
            false,
        ),
        (
            "with tolerationSeconds: evicted when they pass",
            vec![t("", "Exists", "", "", Some(300))],
            false,
        ),
        (
            "tolerationSeconds 0: evicted at once",
            vec![t(OOS, "Exists", "", "", Some(0))],
            false,
        ),
        (
            "the first match decides (a limited one first)",
            vec![
                t(OOS, "Exists", "", "", Some(60)),
                t("", "Exists", "", "", None),
            ],
            false,
        ),
        (
            "the first match decides (an unlimited one first)",
            vec![
                t("", "Exists", "", "", None),
                t(OOS, "Exists", "", "", Some(60)),
            ],
            true,
        ),
        (
            "a non-matching limited one before a matching one",
            vec![
                t(UNREACHABLE, "Exists", "", "NoExecute", Some(300)),
                t(OOS, "Exists", "", "", None),
            ],
            true,
        ),
    ];
    for (name, tolerations, expected) in cases {
        assert_eq!(
            tolerates_out_of_service_forever(&tolerations),
            expected,
            "{name}"
        );
    }
}

fn daemon() -> PodOnNode {
    PodOnNode {
        tolerations: vec![toleration("", "Exists", "", "", None)],
        ..PodOnNode::default()
    }
}

fn app() -> PodOnNode {
    PodOnNode {
        tolerations: vec![
            toleration(UNREACHABLE, "Exists", "", "NoExecute", Some(300)),
            toleration(
                "node.kubernetes.io/not-ready",
                "Exists",
                "",
                "NoExecute",
                Some(300),
            ),
        ],
        ..PodOnNode::default()
    }
}

#[test]
fn the_fate_of_each_pod() {
    let with = |pod: PodOnNode, deletion| PodOnNode { deletion, ..pod };
    let cases = [
        (
            "a DaemonSet pod stays",
            daemon(),
            PodFate::Stays(StayReason::ToleratesOutOfService),
        ),
        ("an app pod leaves", app(), PodFate::Leaves),
        (
            "an evicted app pod is finished off",
            with(app(), Deletion::Graceful),
            PodFate::Evicted,
        ),
        (
            // pod GC force-deletes every terminating pod of an out-of-service node
            "a DaemonSet pod someone deleted is finished off",
            with(daemon(), Deletion::Graceful),
            PodFate::Evicted,
        ),
        (
            "a force-deleted pod waits for its finalizers",
            with(app(), Deletion::Forced),
            PodFate::Finalizing,
        ),
        (
            "a mirror pod is the kubelet's",
            PodOnNode {
                mirror: true,
                ..app()
            },
            PodFate::Stays(StayReason::Mirror),
        ),
    ];
    for (name, pod, expected) in cases {
        assert_eq!(pod_fate(&pod), expected, "{name}");
    }
}

fn uses(pod: PodOnNode, volumes: &[&str]) -> PodOnNode {
    PodOnNode {
        volumes: volumes.iter().map(|v| v.to_string()).collect(),
        ..pod
    }
}

fn attached(volume: &str) -> AttachmentOnNode {
    AttachmentOnNode {
        volume: Some(volume.to_string()),
    }
}

#[test]
fn what_still_blocks_the_release() {
    let inline = AttachmentOnNode { volume: None };
    let forced = |pod: PodOnNode| PodOnNode {
        deletion: Deletion::Forced,
        ..pod
    };
    let evicted = |pod: PodOnNode| PodOnNode {
        deletion: Deletion::Graceful,
        ..pod
    };
    let p = |pods, evicted_pods, volume_attachments| Pending {
        pods,
        evicted_pods,
        volume_attachments,
    };
    let cases: Vec<(&str, Vec<PodOnNode>, Vec<AttachmentOnNode>, Pending)> = vec![
        ("an empty node is released", vec![], vec![], p(0, 0, 0)),
        (
            "only DaemonSet pods left: released (c089897 waited for them until it failed)",
            vec![daemon(), daemon(), uses(daemon(), &["csi-plugin-dir"])],
            vec![],
            p(0, 0, 0),
        ),
        (
            "an app pod and its volume are waited for",
            vec![daemon(), uses(app(), &["pv-db"])],
            vec![attached("pv-db")],
            p(1, 0, 1),
        ),
        (
            "an evicted pod is counted as evicted",
            vec![daemon(), evicted(uses(app(), &["pv-db"]))],
            vec![attached("pv-db")],
            p(1, 1, 1),
        ),
        (
            "the pod is gone, its volume not yet detached",
            vec![daemon()],
            vec![attached("pv-db")],
            p(0, 0, 1),
        ),
        (
            "a DaemonSet pod's volume stays attached",
            vec![uses(daemon(), &["pv-agent"])],
            vec![attached("pv-agent")],
            p(0, 0, 0),
        ),
        (
            "a volume shared by a staying and a leaving pod stays: kube never detaches it",
            vec![uses(daemon(), &["pv-shared"]), uses(app(), &["pv-shared"])],
            vec![attached("pv-shared")],
            p(1, 0, 0),
        ),
        (
            "a force-deleted pod waiting for finalizers does not block, its volume does",
            vec![forced(uses(app(), &["pv-db"]))],
            vec![attached("pv-db")],
            p(0, 0, 1),
        ),
        (
            "a force-deleted DaemonSet pod keeps no volume attached",
            vec![forced(uses(daemon(), &["pv-agent"]))],
            vec![attached("pv-agent")],
            p(0, 0, 1),
        ),
        (
            "an evicted DaemonSet pod keeps no volume attached",
            vec![evicted(uses(daemon(), &["pv-agent"]))],
            vec![attached("pv-agent")],
            p(1, 1, 1),
        ),
        (
            "an inline volume's attachment must go",
            vec![daemon()],
            vec![inline],
            p(0, 0, 1),
        ),
        (
            "a mirror pod neither blocks nor keeps other volumes",
            vec![PodOnNode {
                mirror: true,
                ..app()
            }],
            vec![attached("pv-db")],
            p(0, 0, 1),
        ),
    ];
    for (name, pods, attachments, expected) in cases {
        assert_eq!(pending(&pods, &attachments), expected, "{name}");
    }
}
