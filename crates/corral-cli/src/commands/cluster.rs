//! `corralctl cluster status [-o json]`, `cluster add-server ID ADDR`, `cluster remove-server ID`.

use corral_client::ClusterStatus;
use serde_json::{Value, json};

use crate::args::{ClusterCommand, StatusFormat};
use crate::commands::Ctx;
use crate::error::CliError;
use crate::output::json_text;
use crate::table::Table;

pub async fn run(ctx: &mut Ctx<'_>, command: &ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Status { output } => {
            let status = ctx.client.cluster_status().await?;
            let text = match output {
                Some(StatusFormat::Json) => json_text(&status_json(&status)),
                None => status_text(&status),
            };
            ctx.out.write_all(text.as_bytes()).map_err(CliError::Output)
        }
        ClusterCommand::AddServer { id, addr } => {
            let status = ctx.client.add_server(*id, addr).await?;
            ctx.say(&format!("server {id} added"))?;
            ctx.out
                .write_all(status_text(&status).as_bytes())
                .map_err(CliError::Output)
        }
        ClusterCommand::RemoveServer { id } => {
            let status = ctx.client.remove_server(*id).await?;
            ctx.say(&format!("server {id} removed"))?;
            ctx.out
                .write_all(status_text(&status).as_bytes())
                .map_err(CliError::Output)
        }
    }
}

/// The status as JSON with Kubernetes-style camelCase names.
pub fn status_json(status: &ClusterStatus) -> Value {
    json!({
        "id": status.id,
        "leaderId": status.leader_id,
        "leaderAddr": status.leader_addr,
        "term": status.term,
        "commitIndex": status.commit_index,
        "appliedRevision": status.applied_revision,
        "members": status.members.iter().map(|m| json!({
            "id": m.id,
            "addr": m.addr,
            "voter": m.voter,
            "leader": m.id == status.leader_id,
        })).collect::<Vec<_>>(),
    })
}

/// The members as a table (a `*` marks the leader), then term, commit index and applied revision.
pub fn status_text(status: &ClusterStatus) -> String {
    let mut members = status.members.clone();
    members.sort_by_key(|m| m.id);
    let mut table = Table::new(
        ["ID", "ADDRESS", "VOTER", "LEADER"]
            .map(String::from)
            .to_vec(),
    );
    for m in &members {
        let leader = if m.id == status.leader_id { "*" } else { "" };
        table.push(vec![
            m.id.to_string(),
            m.addr.clone(),
            m.voter.to_string(),
            leader.to_string(),
        ]);
    }
    let leader = match (status.leader_id, status.leader_addr.as_str()) {
        (0, _) => "none known".to_string(),
        (id, "") => id.to_string(),
        (id, addr) => format!("{id} ({addr})"),
    };
    format!(
        "{}\nLeader:            {leader}\nTerm:              {}\nCommit index:      {}\nApplied revision:  {}\nAnswered by:       {}\n",
        table.render(false),
        status.term,
        status.commit_index,
        status.applied_revision,
        status.id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_client::Member;

    fn status() -> ClusterStatus {
        ClusterStatus {
            id: 2,
            leader_id: 1,
            term: 3,
            commit_index: 42,
            applied_revision: 41,
            members: vec![
                Member {
                    id: 2,
                    addr: "10.0.0.2:7071".into(),
                    voter: true,
                },
                Member {
                    id: 1,
                    addr: "10.0.0.1:7071".into(),
                    voter: true,
                },
                Member {
                    id: 3,
                    addr: "10.0.0.3:7071".into(),
                    voter: false,
                },
            ],
            leader_addr: "10.0.0.1:7070".into(),
        }
    }

    #[test]
    fn the_table_marks_the_leader_and_lists_the_raft_numbers() {
        assert_eq!(
            status_text(&status()),
            "ID    ADDRESS         VOTER   LEADER\n\
             1     10.0.0.1:7071   true    *\n\
             2     10.0.0.2:7071   true\n\
             3     10.0.0.3:7071   false\n\
             \n\
             Leader:            1 (10.0.0.1:7070)\n\
             Term:              3\n\
             Commit index:      42\n\
             Applied revision:  41\n\
             Answered by:       2\n"
        );
    }

    #[test]
    fn json_names_every_field() {
        let j = status_json(&status());
        assert_eq!(
            (
                j["leaderId"].as_u64(),
                j["term"].as_u64(),
                j["commitIndex"].as_u64()
            ),
            (Some(1), Some(3), Some(42))
        );
        assert_eq!(j["appliedRevision"], 41);
        assert_eq!(j["members"][1]["leader"], true);
        assert_eq!(j["members"][2]["voter"], false);
    }
}
