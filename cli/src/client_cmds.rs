//! The client commands: one [`Client`] call each, rendered by `output`.
//!
//! Kept apart from the grammar (main.rs) and the rendering (output.rs) so each command
//! reads as "which call, with which quorum, shown how".

use ringkv::client::Client;
use ringkv::client::json::PartitionRows;

use crate::error::CliError;
use crate::output::{self, Rendered};
use crate::parse::{resolve_node, resolve_nodes};
use crate::value_io::{self, ValueSource};
use crate::{
    ClientCommand, CounterCommand, GetValueArgs, GlobalArgs, HllCommand, MapCommand, SetCommand,
};

/// Connects to `--node` with the `--certs`/`--cert-name` identity and runs `command`.
pub async fn run(global: &GlobalArgs, command: ClientCommand) -> Result<Rendered, CliError> {
    if global.json && matches!(&command, ClientCommand::Get(g) if g.raw) {
        return Err(CliError::Usage(
            "--raw writes the value's bytes and --json a JSON object; pick one".to_owned(),
        ));
    }
    let client = connect(global).await?;
    let rendered = match command {
        ClientCommand::Put(put) => {
            let source = ValueSource::of(put.value.as_deref(), put.file.as_deref())?;
            let value = source.read(std::io::stdin().lock())?;
            let written = if put.lww {
                client.put_lww(&put.key, value, put.quorum.opts()).await?
            } else {
                let context = put.context.as_deref();
                client
                    .put(&put.key, value, context, put.quorum.opts())
                    .await?
            };
            output::written(&put.key, "stored", &written)
        }
        ClientCommand::Get(GetValueArgs { get, raw }) => {
            let result = client.get(&get.key, get.quorum.opts()).await?;
            if raw {
                Rendered::raw(value_io::raw_value(&get.key, &result)?)
            } else {
                output::get(&get.key, &result)
            }
        }
        ClientCommand::Del(del) => {
            let context = del.context.as_deref();
            let written = client.delete(&del.key, context, del.quorum.opts()).await?;
            output::written(&del.key, "deleted", &written)
        }
        ClientCommand::Counter(cmd) => counter(&client, cmd).await?,
        ClientCommand::Set(cmd) => set(&client, cmd).await?,
        ClientCommand::Map(cmd) => map(&client, cmd).await?,
        ClientCommand::Hll(cmd) => hll(&client, cmd).await?,
        ClientCommand::Status => output::status(&client.status().await?),
        ClientCommand::Ring => output::ring(&client.ring().await?),
        ClientCommand::Join { seed } => output::changed(&client.join(&seed).await?),
        ClientCommand::Leave { name } => leave(global, &client, name).await?,
        ClientCommand::Stats(args) => {
            let stats = client
                .cluster_stats(&global.certs, &global.cert_name, args.top)
                .await?;
            output::stats(&stats, PartitionRows::listed_if(args.partitions))
        }
    };
    Ok(rendered)
}

/// `ringkv leave [NAME]`: the leave request goes to the leaving node itself, found by
/// name in the --node's member list.
async fn leave(
    global: &GlobalArgs,
    client: &Client,
    name: Option<String>,
) -> Result<Rendered, CliError> {
    let status = client.status().await?;
    let Some(name) = name.filter(|n| n.as_str() != status.node.as_str()) else {
        return Ok(output::changed(&client.leave().await?));
    };
    let Some(member) = status.members.iter().find(|m| m.name.as_str() == name) else {
        let known: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
        return Err(CliError::Usage(format!(
            "{} does not know a member called {name}; members: {}",
            status.node,
            known.join(", ")
        )));
    };
    let addr = resolve_node(&member.addr).await?;
    let leaving = Client::connect(addr, &global.certs, &global.cert_name).await?;
    Ok(output::changed(&leaving.leave().await?))
}

/// A cluster client with the `--node` addresses as seeds: gets and writes go straight to
/// a replica of their key and fail over to the others; reports go to the first seed that
/// answers, join and leave to the first seed only.
pub async fn connect(global: &GlobalArgs) -> Result<Client, CliError> {
    let seeds = resolve_nodes(&global.node).await?;
    if !global.certs.is_dir() {
        return Err(CliError::NoCerts {
            dir: global.certs.clone(),
        });
    }
    Ok(Client::connect_cluster(&seeds, &global.certs, &global.cert_name).await?)
}

async fn counter(client: &Client, cmd: CounterCommand) -> Result<Rendered, CliError> {
    let value = match cmd {
        CounterCommand::Incr(step) => {
            client
                .counter_add(&step.key, step.amount, step.quorum.opts())
                .await?
        }
        // The parser admits 1..=i64::MAX, so the negation cannot overflow.
        CounterCommand::Decr(step) => {
            client
                .counter_add(&step.key, -step.amount, step.quorum.opts())
                .await?
        }
        CounterCommand::Get(get) => client.counter_get(&get.key, get.quorum.opts()).await?,
    };
    Ok(output::counter(value))
}

async fn set(client: &Client, cmd: SetCommand) -> Result<Rendered, CliError> {
    let read = match cmd {
        SetCommand::Add(add) => {
            client
                .set_add(&add.key, add.members, add.quorum.opts())
                .await?
        }
        SetCommand::Remove(remove) => {
            client
                .set_remove(&remove.key, remove.members, remove.quorum.opts())
                .await?
        }
        SetCommand::Get(get) => client.set_get(&get.key, get.quorum.opts()).await?,
    };
    Ok(output::set(&read))
}

async fn map(client: &Client, cmd: MapCommand) -> Result<Rendered, CliError> {
    let read = match cmd {
        MapCommand::Set {
            key,
            field,
            value,
            quorum,
        } => client.map_set(&key, &field, &value, quorum.opts()).await?,
        MapCommand::Incr {
            key,
            field,
            amount,
            quorum,
        } => client.map_incr(&key, &field, amount, quorum.opts()).await?,
        MapCommand::Get(get) => client.map_get(&get.key, get.quorum.opts()).await?,
    };
    Ok(output::map(&read))
}

async fn hll(client: &Client, cmd: HllCommand) -> Result<Rendered, CliError> {
    let estimate = match cmd {
        HllCommand::Add { key, items, quorum } => {
            let items = items.into_iter().map(String::into_bytes).collect();
            client.hll_add(&key, items, quorum.opts()).await?
        }
        HllCommand::Count(get) => client.hll_count(&get.key, get.quorum.opts()).await?,
    };
    Ok(output::hll(estimate))
}
