//! `corralctl describe pod`: kubectl's layout for a pod (node, start time, status and IPs, each
//! init and app container with its state, last state, readiness, restart count, probes,
//! environment and mounts, then conditions, volumes, QoS class, node selectors, tolerations).
//! The events table is appended by the caller.

use serde_json::Value;

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn or_none(t: String) -> String {
    if t.is_empty() { "<none>".into() } else { t }
}

/// `key:` padded to `width`, then the value.
fn line(out: &mut String, indent: usize, key: &str, width: usize, value: &str) {
    let label = format!("{key}:");
    let width = width.max(label.len() + 1);
    out.push_str(&format!(
        "{:indent$}{label:<width$}{value}\n",
        "",
        value = value
    ));
}

/// kubectl's describe time: `Thu, 01 Jan 2026 00:00:00 +0000`.
pub fn rfc1123(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => text.to_string(),
    }
}

fn probe_text(p: &Value) -> String {
    let how = if let Some(cmd) = p.pointer("/exec/command").and_then(Value::as_array) {
        let argv: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        format!("exec [{}]", argv.join(" "))
    } else if let Some(h) = p.get("httpGet") {
        let scheme = s(h, "/scheme").to_lowercase();
        let scheme = if scheme.is_empty() {
            "http".into()
        } else {
            scheme
        };
        let host = s(h, "/host");
        format!(
            "http-get {scheme}://{}:{}{}",
            host,
            s(h, "/port"),
            s(h, "/path")
        )
    } else if let Some(t) = p.get("tcpSocket") {
        format!("tcp-socket {}:{}", s(t, "/host"), s(t, "/port"))
    } else if let Some(g) = p.get("grpc") {
        format!("grpc <pod>:{} {}", s(g, "/port"), s(g, "/service"))
    } else {
        "unknown".into()
    };
    let num = |k: &str, d: i64| p.get(k).and_then(Value::as_i64).unwrap_or(d);
    format!(
        "{how} delay={}s timeout={}s period={}s #success={} #failure={}",
        num("initialDelaySeconds", 0),
        num("timeoutSeconds", 1),
        num("periodSeconds", 10),
        num("successThreshold", 1),
        num("failureThreshold", 3)
    )
}

fn state_lines(out: &mut String, key: &str, state: &Value) {
    let w = 16;
    if let Some(r) = state.get("running") {
        line(out, 4, key, w, "Running");
        line(out, 6, "Started", w - 2, &rfc1123(&s(r, "/startedAt")));
    } else if let Some(t) = state.get("terminated") {
        line(out, 4, key, w, "Terminated");
        line(out, 6, "Reason", w - 2, &s(t, "/reason"));
        if let Some(m) = t.get("message").and_then(Value::as_str) {
            line(out, 6, "Message", w - 2, m);
        }
        line(out, 6, "Exit Code", w - 2, &s(t, "/exitCode"));
        if t.get("signal").is_some() {
            line(out, 6, "Signal", w - 2, &s(t, "/signal"));
        }
        line(out, 6, "Started", w - 2, &rfc1123(&s(t, "/startedAt")));
        line(out, 6, "Finished", w - 2, &rfc1123(&s(t, "/finishedAt")));
    } else if let Some(wt) = state.get("waiting") {
        line(out, 4, key, w, "Waiting");
        line(out, 6, "Reason", w - 2, &s(wt, "/reason"));
        if let Some(m) = wt.get("message").and_then(Value::as_str) {
            line(out, 6, "Message", w - 2, m);
        }
    } else {
        line(out, 4, key, w, "<none>");
    }
}

fn container(out: &mut String, c: &Value, status: Option<&Value>) {
    let w = 16;
    out.push_str(&format!("  {}:\n", s(c, "/name")));
    let st = status.cloned().unwrap_or(Value::Null);
    line(out, 4, "Container ID", w, &s(&st, "/containerID"));
    line(out, 4, "Image", w, &s(c, "/image"));
    line(out, 4, "Image ID", w, &s(&st, "/imageID"));
    let ports: Vec<String> = c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = s(p, "/protocol");
            let proto = if proto.is_empty() {
                "TCP".into()
            } else {
                proto
            };
            format!("{}/{proto}", s(p, "/containerPort"))
        })
        .collect();
    line(out, 4, "Port", w, &or_none(ports.join(", ")));
    let host_ports: Vec<String> = c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("hostPort").is_some())
        .map(|p| format!("{}/TCP", s(p, "/hostPort")))
        .collect();
    line(out, 4, "Host Port", w, &or_none(host_ports.join(", ")));
    for (key, title) in [("command", "Command"), ("args", "Args")] {
        if let Some(items) = c.get(key).and_then(Value::as_array) {
            out.push_str(&format!("    {title}:\n"));
            for i in items {
                out.push_str(&format!("      {}\n", i.as_str().unwrap_or_default()));
            }
        }
    }
    state_lines(out, "State", st.get("state").unwrap_or(&Value::Null));
    if let Some(last) = st
        .get("lastState")
        .filter(|l| l.get("terminated").is_some())
    {
        state_lines(out, "Last State", last);
    }
    line(
        out,
        4,
        "Ready",
        w,
        if st["ready"] == true { "True" } else { "False" },
    );
    line(
        out,
        4,
        "Restart Count",
        w,
        &or_zero(&s(&st, "/restartCount")),
    );
    for (key, title) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        if let Some(p) = c.get(key) {
            line(out, 4, title, w, &probe_text(p));
        }
    }
    let env: Vec<String> = c
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let from = if e.get("value").is_some() {
                s(e, "/value")
            } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
                format!(
                    "<set to the key '{}' of config map '{}'>",
                    s(r, "/key"),
                    s(r, "/name")
                )
            } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                format!(
                    "<set to the key '{}' in secret '{}'>",
                    s(r, "/key"),
                    s(r, "/name")
                )
            } else if let Some(r) = e.pointer("/valueFrom/fieldRef") {
                format!("({}:{})", s(r, "/apiVersion"), s(r, "/fieldPath"))
            } else if let Some(r) = e.pointer("/valueFrom/resourceFieldRef") {
                format!("{} ({})", s(r, "/resource"), s(r, "/containerName"))
            } else {
                String::new()
            };
            format!("{}:  {from}", s(e, "/name"))
        })
        .collect();
    if env.is_empty() {
        line(out, 4, "Environment", w, "<none>");
    } else {
        out.push_str("    Environment:\n");
        for e in env {
            out.push_str(&format!("      {e}\n"));
        }
    }
    let mounts: Vec<String> = c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let mode = if m["readOnly"] == true { "ro" } else { "rw" };
            let sub = s(m, "/subPath");
            let sub = if sub.is_empty() {
                String::new()
            } else {
                format!(",path=\"{sub}\"")
            };
            format!(
                "{} from {} ({mode}{sub})",
                s(m, "/mountPath"),
                s(m, "/name")
            )
        })
        .collect();
    if mounts.is_empty() {
        line(out, 4, "Mounts", w, "<none>");
    } else {
        out.push_str("    Mounts:\n");
        for m in mounts {
            out.push_str(&format!("      {m}\n"));
        }
    }
}

fn or_zero(t: &str) -> String {
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

fn volume_lines(out: &mut String, v: &Value) {
    out.push_str(&format!("  {}:\n", s(v, "/name")));
    let w = 12;
    let obj = v.as_object();
    let kind = obj
        .and_then(|m| m.keys().find(|k| k.as_str() != "name").cloned())
        .unwrap_or_default();
    let src = &v[kind.as_str()];
    match kind.as_str() {
        "emptyDir" => {
            line(
                out,
                4,
                "Type",
                w,
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            line(out, 4, "Medium", w, &s(src, "/medium"));
        }
        "hostPath" => {
            line(out, 4, "Type", w, "HostPath (bare host directory volume)");
            line(out, 4, "Path", w, &s(src, "/path"));
            line(out, 4, "HostPathType", w, &s(src, "/type"));
        }
        "configMap" => {
            line(
                out,
                4,
                "Type",
                w,
                "ConfigMap (a volume populated by a ConfigMap)",
            );
            line(out, 4, "Name", w, &s(src, "/name"));
            line(
                out,
                4,
                "Optional",
                w,
                if src["optional"] == true {
                    "true"
                } else {
                    "false"
                },
            );
        }
        "secret" => {
            line(out, 4, "Type", w, "Secret (a volume populated by a Secret)");
            line(out, 4, "SecretName", w, &s(src, "/secretName"));
            line(
                out,
                4,
                "Optional",
                w,
                if src["optional"] == true {
                    "true"
                } else {
                    "false"
                },
            );
        }
        "downwardAPI" => {
            line(
                out,
                4,
                "Type",
                w,
                "DownwardAPI (a volume populated by information about the pod)",
            );
        }
        "projected" => {
            line(
                out,
                4,
                "Type",
                w,
                "Projected (a volume that contains injected data from multiple sources)",
            );
            for source in src
                .get("sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = source.get("serviceAccountToken") {
                    line(
                        out,
                        4,
                        "TokenExpirationSeconds",
                        w,
                        &or_none(s(t, "/expirationSeconds")),
                    );
                } else if let Some(c) = source.get("configMap") {
                    line(out, 4, "ConfigMapName", w, &s(c, "/name"));
                    line(
                        out,
                        4,
                        "Optional",
                        w,
                        if c["optional"] == true {
                            "true"
                        } else {
                            "false"
                        },
                    );
                } else if source.get("downwardAPI").is_some() {
                    line(out, 4, "DownwardAPI", w, "true");
                }
            }
        }
        "persistentVolumeClaim" => {
            line(
                out,
                4,
                "Type",
                w,
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
            );
            line(out, 4, "ClaimName", w, &s(src, "/claimName"));
            line(
                out,
                4,
                "ReadOnly",
                w,
                if src["readOnly"] == true {
                    "true"
                } else {
                    "false"
                },
            );
        }
        other => line(out, 4, "Type", w, other),
    }
}

fn toleration_text(t: &Value) -> String {
    let key = s(t, "/key");
    let value = s(t, "/value");
    let effect = s(t, "/effect");
    let op = s(t, "/operator");
    let mut text = key;
    if !value.is_empty() {
        text.push('=');
        text.push_str(&value);
    }
    if !effect.is_empty() {
        text.push(':');
        text.push_str(&effect);
    }
    if op == "Exists" {
        text.push_str(" op=Exists");
    }
    if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
        text.push_str(&format!(" for {secs}s"));
    }
    text
}

/// The pod part of `describe pod` (everything before Events).
pub fn pod_text(pod: &Value, labels: &[String], annotations: &[String]) -> String {
    let mut out = String::new();
    let w = 18;
    line(&mut out, 0, "Name", w, &s(pod, "/metadata/name"));
    line(&mut out, 0, "Namespace", w, &s(pod, "/metadata/namespace"));
    line(
        &mut out,
        0,
        "Priority",
        w,
        &or_zero(&s(pod, "/spec/priority")),
    );
    line(
        &mut out,
        0,
        "Service Account",
        w,
        &or_none(s(pod, "/spec/serviceAccountName")),
    );
    let node = s(pod, "/spec/nodeName");
    let host_ip = s(pod, "/status/hostIP");
    let node_text = match (node.is_empty(), host_ip.is_empty()) {
        (true, _) => "<none>".to_string(),
        (false, true) => node,
        (false, false) => format!("{node}/{host_ip}"),
    };
    line(&mut out, 0, "Node", w, &node_text);
    let start = s(pod, "/status/startTime");
    if !start.is_empty() {
        line(&mut out, 0, "Start Time", w, &rfc1123(&start));
    }
    for (title, items) in [("Labels", labels), ("Annotations", annotations)] {
        match items.split_first() {
            None => line(&mut out, 0, title, w, "<none>"),
            Some((first, rest)) => {
                line(&mut out, 0, title, w, first);
                for r in rest {
                    out.push_str(&format!("{:w$}{r}\n", ""));
                }
            }
        }
    }
    let mut status = s(pod, "/status/phase");
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        status = "Terminating".into();
    }
    line(&mut out, 0, "Status", w, &or_none(status));
    if let Some(ts) = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        line(
            &mut out,
            0,
            "Termination Grace Period",
            w,
            &format!("{}s", s(pod, "/metadata/deletionGracePeriodSeconds")),
        );
        line(&mut out, 0, "Terminating since", w, &rfc1123(ts));
    }
    line(&mut out, 0, "IP", w, &s(pod, "/status/podIP"));
    let ips: Vec<String> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| s(i, "/ip"))
        .collect();
    if ips.is_empty() {
        line(&mut out, 0, "IPs", w, "<none>");
    } else {
        out.push_str("IPs:\n");
        for ip in ips {
            out.push_str(&format!("  IP:  {ip}\n"));
        }
    }
    if let Some(owner) = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|r| r.iter().find(|o| o["controller"] == true))
    {
        line(
            &mut out,
            0,
            "Controlled By",
            w,
            &format!("{}/{}", s(owner, "/kind"), s(owner, "/name")),
        );
    }
    for (key, skey, title) in [
        ("initContainers", "initContainerStatuses", "Init Containers"),
        ("containers", "containerStatuses", "Containers"),
    ] {
        let Some(cs) = pod
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        if cs.is_empty() {
            continue;
        }
        out.push_str(&format!("{title}:\n"));
        let statuses = pod
            .pointer(&format!("/status/{skey}"))
            .and_then(Value::as_array);
        for c in cs {
            let st = statuses.and_then(|ss| ss.iter().find(|x| x["name"] == c["name"]));
            container(&mut out, c, st);
        }
    }
    let conds = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !conds.is_empty() {
        out.push_str("Conditions:\n");
        out.push_str(&format!("  {:<28}{}\n", "Type", "Status"));
        for c in &conds {
            out.push_str(&format!("  {:<28}{}\n", s(c, "/type"), s(c, "/status")));
        }
    }
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if volumes.is_empty() {
        line(&mut out, 0, "Volumes", w, "<none>");
    } else {
        out.push_str("Volumes:\n");
        for v in &volumes {
            volume_lines(&mut out, v);
        }
    }
    line(
        &mut out,
        0,
        "QoS Class",
        w,
        &or_none(s(pod, "/status/qosClass")),
    );
    let selectors: Vec<String> = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    line(
        &mut out,
        0,
        "Node-Selectors",
        w,
        &or_none(selectors.join(",")),
    );
    let tolerations: Vec<String> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(toleration_text)
        .collect();
    match tolerations.split_first() {
        None => line(&mut out, 0, "Tolerations", w, "<none>"),
        Some((first, rest)) => {
            line(&mut out, 0, "Tolerations", w, first);
            for r in rest {
                out.push_str(&format!("{:w$}{r}\n", ""));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_running_pod_reads_like_kubectl() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "nodeName": "n1", "serviceAccountName": "default",
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"],
                    "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "env": [{"name": "A", "value": "1"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}],
            },
            "status": {
                "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.0.0.1",
                "podIPs": [{"ip": "10.0.0.1"}], "startTime": "2026-01-01T00:00:00Z", "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2,
                    "containerID": "process://u/c/2",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "Error",
                        "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:04Z"}}}],
            },
        });
        let text = pod_text(&pod, &[], &[]);
        for want in [
            "Node:             n1/10.0.0.1\n",
            "Start Time:       Thu, 01 Jan 2026 00:00:00 +0000\n",
            "Status:           Running\n",
            "  c:\n",
            "    Container ID:   process://u/c/2\n",
            "    Port:           80/TCP\n",
            "    State:          Running\n",
            "    Last State:     Terminated\n",
            "      Exit Code:    137\n",
            "    Ready:          True\n",
            "    Restart Count:  2\n",
            "    Liveness:       http-get http://:80/ delay=0s timeout=1s period=10s #success=1 #failure=3\n",
            "      A:  1\n",
            "      /data from data (rw)\n",
            "  Ready                       True\n",
            "    Type:       EmptyDir (a temporary directory that shares a pod's lifetime)\n",
            "QoS Class:        BestEffort\n",
            "Tolerations:      node.kubernetes.io/unreachable:NoExecute op=Exists for 300s\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_waiting_container_shows_its_reason() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "configmap \"x\" not found"}}}]},
        });
        let text = pod_text(&pod, &[], &[]);
        assert!(text.contains("    State:          Waiting\n      Reason:       CreateContainerConfigError\n      Message:      configmap \"x\" not found\n"), "{text}");
        assert!(text.contains("Node:             <none>\n"), "{text}");
    }
}
