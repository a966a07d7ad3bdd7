//! Cluster DNS end to end: real `corral server` processes serving DNS (`--dns`) and a real DNS
//! client (`dig`, from Debian's dnsutils; `kdig` for one TCP check) asking over UDP and TCP.
//! Services carry explicit cluster IPs and the tests write Endpoints themselves (selector-less
//! services, as Kubernetes allows), so nothing here depends on the Endpoints controller.
//!
//! Checked against the Kubernetes DNS-Based Service Discovery specification 1.1.0: A/AAAA for
//! cluster IPs, headless services answering their ready endpoints only (and following an
//! address between `addresses` and `notReadyAddresses`), hostname names, SRV with the
//! additional section, PTR in both reverse trees, ExternalName CNAMEs, the version TXT, SOA and
//! NS at the apex, NXDOMAIN against NOERROR without answers (with the SOA), every server
//! answering, names outside the zone refused or forwarded to an upstream (here another Corral's
//! DNS), and a garbage packet changing nothing.

use std::time::Duration;

use corral_client::Client;
use corral_tests::{TestCluster, eventually, free_port};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// What `dig` printed, taken apart.
#[derive(Debug, Default)]
struct Reply {
    status: String,
    flags: Vec<String>,
    /// "name ttl type data", data as dig prints it.
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

impl Reply {
    fn parse(text: &str) -> Reply {
        let mut r = Reply::default();
        let mut section = "";
        for line in text.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                r.status = rest.split(',').next().unwrap_or_default().to_string();
            }
            if let Some(rest) = line.strip_prefix(";; flags: ") {
                r.flags = rest
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            }
            if line.starts_with(";; ") && line.ends_with(" SECTION:") {
                section = line;
                continue;
            }
            if line.trim().is_empty() {
                section = "";
                continue;
            }
            if line.starts_with(';') {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 {
                continue;
            }
            // name ttl IN type data...
            let rec = format!("{} {} {} {}", f[0], f[1], f[3], f[4..].join(" "));
            if section.contains("ANSWER") {
                r.answer.push(rec);
            } else if section.contains("AUTHORITY") {
                r.authority.push(rec);
            } else if section.contains("ADDITIONAL") {
                r.additional.push(rec);
            }
        }
        r.answer.sort();
        r.additional.sort();
        r
    }

    /// The data of the answers, sorted.
    fn data(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .answer
            .iter()
            .map(|a| a.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
            .collect();
        d.sort();
        d
    }

    fn authoritative(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }
}

/// `dig @127.0.0.1 -p PORT NAME TYPE` (over TCP with `tcp`).
async fn dig(port: u16, name: &str, rtype: &str, tcp: bool) -> Reply {
    let mut cmd = tokio::process::Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=3"])
        .args([name, rtype]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .expect("dig runs (dnsutils: scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let reply = Reply::parse(&text);
    assert!(
        !reply.status.is_empty(),
        "dig {name} {rtype} got no answer:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reply
}

/// Asks until the answer's data is `want` (the zone follows the informers a moment later).
async fn eventually_data(port: u16, name: &str, rtype: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(&format!("{name} {rtype} → {want:?}"), T, || {
        let want = want.clone();
        async move {
            let r = dig(port, name, rtype, false).await;
            if r.status == "NOERROR" && r.data() == want {
                Ok(())
            } else {
                Err(format!("{} {:?}", r.status, r.answer))
            }
        }
    })
    .await
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn headless_endpoints(ready: &[(&str, Option<&str>)], not_ready: &[(&str, Option<&str>)]) -> Value {
    let addr = |(ip, host): &(&str, Option<&str>)| match host {
        Some(h) => json!({"ip": ip, "hostname": h}),
        None => json!({"ip": ip}),
    };
    json!({"apiVersion": "v1", "kind": "Endpoints",
    "metadata": {"name": "nginx", "namespace": "default"},
    "subsets": [{
        "addresses": ready.iter().map(addr).collect::<Vec<_>>(),
        "notReadyAddresses": not_ready.iter().map(addr).collect::<Vec<_>>(),
        "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
    }]})
}

async fn create_objects(client: &Client) {
    for obj in [
        service(
            "web",
            json!({"clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
        service(
            "web6",
            json!({"clusterIP": "fd00::10", "ports": [{"port": 80}]}),
        ),
        service(
            "nginx",
            json!({"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}),
        ),
        headless_endpoints(
            &[
                ("10.1.0.1", Some("web-0")),
                ("10.1.0.2", Some("web-1")),
                ("10.1.0.3", None),
            ],
            &[("10.1.0.4", Some("web-2"))],
        ),
        service(
            "ext",
            json!({"type": "ExternalName", "externalName": "web.default.svc.upstream.test"}),
        ),
    ] {
        client.create(&obj).await.expect("create");
    }
}

/// Three servers, each serving DNS on its own port; the first two forward to `upstream` when
/// given, the third has no upstream.
fn start(upstream: Option<u16>) -> (TestCluster, Vec<u16>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let p = ports.clone();
    let c = TestCluster::start_with(3, &[], move |id| {
        let mut flags = vec![
            "--dns".to_string(),
            format!("127.0.0.1:{}", p[id as usize - 1]),
        ];
        if let (Some(up), true) = (upstream, id < 3) {
            flags.push("--dns-upstream".into());
            flags.push(format!("127.0.0.1:{up}"));
        }
        flags
    });
    (c, ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_answer_as_the_spec_says_on_every_server() {
    let (c, ports) = start(None);
    c.leader(T).await;
    create_objects(&c.client()).await;
    for port in &ports {
        eventually_data(*port, "web.default.svc.cluster.local", "A", &["10.96.0.10"]).await;
    }
    let port = ports[0];
    for tcp in [false, true] {
        // A ClusterIP service: its IP, authoritative, TTL 5 s, case-insensitive.
        let r = dig(port, "Web.DEFAULT.svc.Cluster.Local", "A", tcp).await;
        assert_eq!(r.status, "NOERROR");
        assert!(r.authoritative(), "AA is set: {:?}", r.flags);
        assert_eq!(r.answer.len(), 1, "{r:?}");
        assert!(r.answer[0].ends_with(" 5 A 10.96.0.10"), "{r:?}");

        // SRV for each named port, the target's A in the additional section.
        let r = dig(port, "_http._tcp.web.default.svc.cluster.local", "SRV", tcp).await;
        assert_eq!(r.data(), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(
            r.additional,
            ["web.default.svc.cluster.local. 5 A 10.96.0.10"]
        );
        let r = dig(port, "_dns._udp.web.default.svc.cluster.local", "SRV", tcp).await;
        assert_eq!(r.data(), ["0 100 53 web.default.svc.cluster.local."]);

        // PTR for the cluster IP.
        let r = dig(port, "10.0.96.10.in-addr.arpa", "PTR", tcp).await;
        assert_eq!(r.data(), ["web.default.svc.cluster.local."]);
        assert!(r.authoritative());

        // IPv6: AAAA and ip6.arpa.
        let r = dig(port, "web6.default.svc.cluster.local", "AAAA", tcp).await;
        assert_eq!(r.data(), ["fd00::10"]);
        let r = dig(
            port,
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
            "PTR",
            tcp,
        )
        .await;
        assert_eq!(r.data(), ["web6.default.svc.cluster.local."]);

        // A headless service: its ready endpoints, not the not-ready one.
        let r = dig(port, "nginx.default.svc.cluster.local", "A", tcp).await;
        assert_eq!(r.data(), ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
        let r = dig(port, "web-0.nginx.default.svc.cluster.local", "A", tcp).await;
        assert_eq!(r.data(), ["10.1.0.1"]);
        let r = dig(port, "10-1-0-3.nginx.default.svc.cluster.local", "A", tcp).await;
        assert_eq!(r.data(), ["10.1.0.3"], "the system-assigned hostname");
        let r = dig(port, "web-2.nginx.default.svc.cluster.local", "A", tcp).await;
        assert_eq!(r.status, "NXDOMAIN", "a not-ready endpoint has no name");
        let r = dig(
            port,
            "_web._tcp.nginx.default.svc.cluster.local",
            "SRV",
            tcp,
        )
        .await;
        assert_eq!(
            r.data(),
            [
                "0 33 8080 10-1-0-3.nginx.default.svc.cluster.local.",
                "0 33 8080 web-0.nginx.default.svc.cluster.local.",
                "0 33 8080 web-1.nginx.default.svc.cluster.local.",
            ]
        );
        assert_eq!(
            r.additional,
            [
                "10-1-0-3.nginx.default.svc.cluster.local. 5 A 10.1.0.3",
                "web-0.nginx.default.svc.cluster.local. 5 A 10.1.0.1",
                "web-1.nginx.default.svc.cluster.local. 5 A 10.1.0.2",
            ]
        );
        let r = dig(port, "2.0.1.10.in-addr.arpa", "PTR", tcp).await;
        assert_eq!(r.data(), ["web-1.nginx.default.svc.cluster.local."]);

        // ExternalName: a CNAME (no upstream here to follow it out of the zone).
        let r = dig(port, "ext.default.svc.cluster.local", "A", tcp).await;
        assert_eq!(r.status, "NOERROR");
        assert_eq!(
            r.answer,
            ["ext.default.svc.cluster.local. 5 CNAME web.default.svc.upstream.test."]
        );

        // The schema version, the apex.
        let r = dig(port, "dns-version.cluster.local", "TXT", tcp).await;
        assert_eq!(r.data(), ["\"1.1.0\""]);
        let r = dig(port, "cluster.local", "SOA", tcp).await;
        let soa = r.data();
        assert_eq!(soa.len(), 1);
        let soa: Vec<&str> = soa[0].split(' ').collect();
        assert_eq!(
            (soa[0], soa[1], soa[3], soa[4], soa[5], soa[6]),
            (
                "ns.dns.cluster.local.",
                "hostmaster.cluster.local.",
                "7200",
                "1800",
                "86400",
                "5"
            )
        );
        let r = dig(port, "cluster.local", "NS", tcp).await;
        assert_eq!(r.data(), ["ns.dns.cluster.local."]);
        assert_eq!(r.additional, ["ns.dns.cluster.local. 5 A 127.0.0.1"]);

        // NXDOMAIN versus NOERROR without answers, both with the SOA.
        for (name, rtype, status) in [
            ("nope.default.svc.cluster.local", "A", "NXDOMAIN"),
            ("web.nosuchns.svc.cluster.local", "A", "NXDOMAIN"),
            ("nosuchns.svc.cluster.local", "A", "NXDOMAIN"),
            (
                "_nope._tcp.web.default.svc.cluster.local",
                "SRV",
                "NXDOMAIN",
            ),
            ("web.default.svc.cluster.local", "AAAA", "NOERROR"),
            ("web.default.svc.cluster.local", "TXT", "NOERROR"),
            ("nginx.default.svc.cluster.local", "SRV", "NOERROR"),
            ("default.svc.cluster.local", "A", "NOERROR"),
            ("svc.cluster.local", "A", "NOERROR"),
            ("_tcp.web.default.svc.cluster.local", "SRV", "NOERROR"),
        ] {
            let r = dig(port, name, rtype, tcp).await;
            assert_eq!(r.status, status, "{name} {rtype}: {r:?}");
            assert!(r.answer.is_empty(), "{name} {rtype}: {r:?}");
            assert!(r.authoritative(), "{name} {rtype}: {r:?}");
            assert_eq!(r.authority.len(), 1, "{name} {rtype}: {r:?}");
            assert!(
                r.authority[0].starts_with("cluster.local. 5 SOA ns.dns.cluster.local."),
                "{name} {rtype}: {r:?}"
            );
        }

        // The deprecated pod records (still required by the spec).
        let r = dig(port, "10-244-0-7.default.pod.cluster.local", "A", tcp).await;
        assert_eq!(r.data(), ["10.244.0.7"]);

        // Outside the zone with no upstream: REFUSED.
        let r = dig(ports[2], "example.com", "A", tcp).await;
        assert_eq!(r.status, "REFUSED");
    }

    // kdig, the other real client, over TCP.
    let out = tokio::process::Command::new("kdig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tcp",
            "+short",
            "web.default.svc.cluster.local",
            "A",
        ])
        .output()
        .await
        .expect("kdig runs (knot-dnsutils: scripts/setup.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10.96.0.10");

    // A garbage datagram and a header-only message: the server keeps answering.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.send_to(b"\x01\x02garbage", ("127.0.0.1", port))
        .await
        .expect("send");
    // A header claiming one question that is not there: FORMERR.
    sock.send_to(
        &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        ("127.0.0.1", port),
    )
    .await
    .expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(T, sock.recv_from(&mut buf))
        .await
        .expect("an answer to the truncated question")
        .expect("recv");
    assert!(n >= 12);
    assert_eq!(&buf[..2], &[0xab, 0xcd], "the same id");
    assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
    let r = dig(port, "web.default.svc.cluster.local", "A", false).await;
    assert_eq!(r.data(), ["10.96.0.10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_answers_follow_readiness_and_outside_names_are_forwarded() {
    // The upstream: another Corral serving `upstream.test`.
    let up_port = free_port();
    let upstream = TestCluster::start(
        1,
        &[
            "--dns",
            &format!("127.0.0.1:{up_port}"),
            "--cluster-domain",
            "upstream.test",
            "--service-cluster-ip-range",
            "10.200.0.0/16",
        ],
    );
    upstream.leader(T).await;
    upstream
        .client()
        .create(&service(
            "web",
            json!({"clusterIP": "10.200.0.10", "ports": [{"port": 80}]}),
        ))
        .await
        .expect("create");
    eventually_data(
        up_port,
        "web.default.svc.upstream.test",
        "A",
        &["10.200.0.10"],
    )
    .await;

    let (c, ports) = start(Some(up_port));
    c.leader(T).await;
    let client = c.client();
    create_objects(&client).await;
    let port = ports[0];
    eventually_data(
        port,
        "nginx.default.svc.cluster.local",
        "A",
        &["10.1.0.1", "10.1.0.2", "10.1.0.3"],
    )
    .await;

    // Forwarded: the upstream's answer relayed, over UDP and TCP, from either server with an
    // upstream; its NXDOMAIN too.
    for (p, tcp) in [(ports[0], false), (ports[1], true)] {
        let r = dig(p, "web.default.svc.upstream.test", "A", tcp).await;
        assert_eq!(r.status, "NOERROR");
        assert_eq!(r.data(), ["10.200.0.10"]);
        assert!(r.flags.iter().any(|f| f == "ra"), "{:?}", r.flags);
        assert!(!r.authoritative(), "relayed, not ours: {:?}", r.flags);
        let r = dig(p, "nope.default.svc.upstream.test", "A", tcp).await;
        assert_eq!(r.status, "NXDOMAIN");
        assert_eq!(r.authority.len(), 1, "the upstream's SOA: {r:?}");
    }
    // An ExternalName whose target is outside the zone: the CNAME, then the target's address.
    let r = dig(port, "ext.default.svc.cluster.local", "A", false).await;
    assert_eq!(
        r.answer,
        [
            "ext.default.svc.cluster.local. 5 CNAME web.default.svc.upstream.test.",
            "web.default.svc.upstream.test. 5 A 10.200.0.10",
        ]
    );
    // The third server has no upstream.
    let r = dig(ports[2], "web.default.svc.upstream.test", "A", false).await;
    assert_eq!(r.status, "REFUSED");

    // web-1 turns not ready: it leaves the service's answer, its name and SRV target.
    let mut ep = client
        .get("Endpoints", "default", "nginx")
        .await
        .expect("get");
    let not_ready = headless_endpoints(
        &[("10.1.0.1", Some("web-0")), ("10.1.0.3", None)],
        &[("10.1.0.2", Some("web-1")), ("10.1.0.4", Some("web-2"))],
    );
    ep["subsets"] = not_ready["subsets"].clone();
    let ep = client.update(&ep).await.expect("update");
    for p in &ports {
        eventually_data(
            *p,
            "nginx.default.svc.cluster.local",
            "A",
            &["10.1.0.1", "10.1.0.3"],
        )
        .await;
    }
    let r = dig(port, "web-1.nginx.default.svc.cluster.local", "A", true).await;
    assert_eq!(r.status, "NXDOMAIN");
    let r = dig(
        port,
        "_web._tcp.nginx.default.svc.cluster.local",
        "SRV",
        false,
    )
    .await;
    assert_eq!(
        r.data(),
        [
            "0 50 8080 10-1-0-3.nginx.default.svc.cluster.local.",
            "0 50 8080 web-0.nginx.default.svc.cluster.local.",
        ]
    );

    // Back to ready, and web-2 too.
    let mut ep = ep;
    let ready = headless_endpoints(
        &[
            ("10.1.0.1", Some("web-0")),
            ("10.1.0.2", Some("web-1")),
            ("10.1.0.3", None),
            ("10.1.0.4", Some("web-2")),
        ],
        &[],
    );
    ep["subsets"] = ready["subsets"].clone();
    client.update(&ep).await.expect("update");
    eventually_data(
        port,
        "nginx.default.svc.cluster.local",
        "A",
        &["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"],
    )
    .await;
    let r = dig(port, "web-2.nginx.default.svc.cluster.local", "A", false).await;
    assert_eq!(r.data(), ["10.1.0.4"]);

    // No ready endpoint at all: NXDOMAIN (spec 2.4.1).
    let mut ep = client
        .get("Endpoints", "default", "nginx")
        .await
        .expect("get");
    let none = headless_endpoints(&[], &[("10.1.0.1", Some("web-0"))]);
    ep["subsets"] = none["subsets"].clone();
    client.update(&ep).await.expect("update");
    eventually(
        "the headless service without ready endpoints is NXDOMAIN",
        T,
        || async move {
            let r = dig(port, "nginx.default.svc.cluster.local", "A", false).await;
            if r.status == "NXDOMAIN" {
                Ok(())
            } else {
                Err(format!("{} {:?}", r.status, r.answer))
            }
        },
    )
    .await;

    // A deleted service disappears.
    client
        .delete("Service", "default", "web", &Default::default())
        .await
        .expect("delete");
    eventually("the deleted service is NXDOMAIN", T, || async move {
        let r = dig(port, "web.default.svc.cluster.local", "A", false).await;
        if r.status == "NXDOMAIN" {
            Ok(())
        } else {
            Err(format!("{} {:?}", r.status, r.answer))
        }
    })
    .await;
}
