//! What `up` does on a running network through the SDK: defines the chaincodes (install on every
//! peer, each organisation's admin approves, the first organisation's admin commits), runs the
//! commerce demo, and has the auditor verify the chain.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use mercato_peer::lifecycle::{
    APPROVE, COMMIT, ChaincodeDefinition, LIFECYCLE, QUERY_DEFINITION, new_package,
};
use mercato_proto::hash::{block_header_bytes, data_hash};
use mercato_proto::pb::common::{Block, ChannelHeader, Header, HeaderType, SignatureHeader};
use mercato_proto::pb::orderer::seek_info::SeekBehavior;
use mercato_proto::pb::orderer::seek_position::Type as Seek;
use mercato_proto::pb::orderer::{SeekInfo, SeekPosition};
use mercato_proto::pb::protos::deliver_client::DeliverClient;
use mercato_proto::pb::protos::deliver_response::Type as Reply;
use mercato_proto::transaction::new_signed_envelope;
use mercato_sdk::{Gateway, Identity, Proposal};
use prost::Message;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::network::{Kind, State, step};

/// A gateway as one of the network's users.
pub async fn gateway(state: &State, user: &str) -> Result<Gateway> {
    let u = state
        .users
        .get(user)
        .ok_or_else(|| anyhow!("no user {user} in this network"))?;
    let id =
        Identity::load(&u.msp_id, &u.msp_dir).with_context(|| format!("the identity of {user}"))?;
    let roots = std::fs::read(&u.tls_root)?;
    Ok(Gateway::connect(&u.peer, &roots, id).await?)
}

/// Installs, approves and commits every chaincode of the spec that is not yet committed.
pub async fn define_chaincodes(state: &mut State, workspace: &std::path::Path) -> Result<()> {
    let channel = state.spec.channel.clone();
    for cc in state.spec.chaincodes.clone() {
        if state.committed.contains(&cc.name) {
            continue;
        }
        let wasm = crate::network::build_chaincode(workspace, &cc.package)?;
        let package = new_package(
            &format!("{}_{}", cc.name, cc.version),
            &cc.name,
            &cc.version,
            &wasm,
        );
        step(&format!("installing {} on every peer", cc.name));
        let mut hash = None;
        for peer in state.nodes.iter().filter(|n| n.kind == Kind::Peer) {
            let config = mercato_peer::node::Config::load(&peer.home.join("peer.toml"))?;
            let installed = mercato_peer::node::install(&config, &package)
                .with_context(|| format!("installing {} on {}", cc.name, peer.name))?;
            hash = Some(installed.hash);
        }
        let hash = hash.ok_or_else(|| anyhow!("the network has no peer"))?;
        // Already defined (a resumed network that was interrupted after its commit)? The first
        // organisation's admin asks, and commits.
        let first = state
            .spec
            .orgs
            .first()
            .map(|o| o.msp_id.clone())
            .ok_or_else(|| anyhow!("the network has no organisation"))?;
        let g = gateway(state, &format!("admin@{first}")).await?;
        let lifecycle = g.network(&channel).contract(LIFECYCLE);
        let defined = lifecycle
            .evaluate_proposal(&Proposal {
                function: QUERY_DEFINITION.into(),
                args: vec![cc.name.as_bytes().to_vec()],
                ..Default::default()
            })
            .await
            .is_ok();
        if !defined {
            let def = ChaincodeDefinition {
                name: cc.name.clone(),
                version: cc.version.clone(),
                sequence: 1,
                package_hash: hash,
                endorsement_policy: cc.policy.clone(),
            }
            .encode();
            let mut approved = 0;
            for org in state.spec.orgs.clone() {
                step(&format!(
                    "{}: its admin approves {} (policy {})",
                    org.msp_id, cc.name, cc.policy
                ));
                let admin = gateway(state, &format!("admin@{}", org.msp_id)).await?;
                let done = admin
                    .network(&channel)
                    .contract(LIFECYCLE)
                    .submit_proposal(&Proposal {
                        function: APPROVE.into(),
                        args: vec![def.clone()],
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("{} approving {}", org.msp_id, cc.name))?;
                approved = approved.max(done.block);
            }
            // Each approval waited for its own peer; the committing peer must have them all.
            wait_peers(state, approved + 1).await?;
            step(&format!("committing the definition of {}", cc.name));
            lifecycle
                .submit_proposal(&Proposal {
                    function: COMMIT.into(),
                    args: vec![def],
                    ..Default::default()
                })
                .await
                .with_context(|| format!("committing {}", cc.name))?;
        }
        state.committed.push(cc.name.clone());
        state.save(&state.spec.data_dir.clone())?;
    }
    Ok(())
}

/// Waits for a submitted transaction, then until every peer has committed its block: the next
/// step may be endorsed on another organisation's peer, which must already see this one.
async fn everywhere(
    state: &State,
    submitted: impl std::future::Future<Output = mercato_sdk::Result<mercato_sdk::Submitted>>,
) -> Result<mercato_sdk::Submitted> {
    let done = submitted.await?;
    wait_peers(state, done.block + 1).await?;
    Ok(done)
}

/// Prepares the commerce marketplace for the `orders` benchmark and returns each user's route.
/// The first brand's organisation acts as the platform (its admin initialises the contract, with
/// a 2 % fee and no rewards, registers the brands and mints coins). Each brand's operator
/// (`users`, in the order of the spec's brands) lists a product of its brand (10 coins, 10 %
/// commission, a stock that does not run out), opens a shop listing the next brand's product,
/// and buys its own brand's product through the previous brand's shop: so it ships and confirms
/// its own orders, and each settlement credits its brand's revenue, the other operator's
/// commission and the one fee account.
pub async fn prepare_orders(
    state: &State,
    chaincode: &str,
    users: &[String],
) -> Result<Vec<mercato_sdk::bench::OrderRoute>> {
    let brands: Vec<(String, String)> = state
        .spec
        .orgs
        .iter()
        .filter_map(|o| o.brand.clone().map(|b| (b, o.msp_id.clone())))
        .collect();
    if brands.len() < 2 || brands.len() != users.len() {
        bail!("the orders workload needs two or more brand organisations, one operator each");
    }
    let channel = state.spec.channel.clone();
    let platform_msp = brands[0].1.clone();
    let admin = gateway(state, &format!("admin@{platform_msp}")).await?;
    let admin = admin.network(&channel).contract(chaincode);
    let mut operators = Vec::new();
    for u in users {
        operators.push(
            gateway(state, u)
                .await?
                .network(&channel)
                .contract(chaincode),
        );
    }
    let sku = "bench-item";
    let shop = |brand: &str| format!("bench-{brand}");
    if admin.evaluate("get_config", &[]).await.is_err() {
        everywhere(
            state,
            admin.submit("init", &[platform_msp.as_bytes(), b"200"]),
        )
        .await?;
        for (brand, msp) in &brands {
            everywhere(
                state,
                admin.submit("register_brand", &[brand.as_bytes(), msp.as_bytes()]),
            )
            .await?;
        }
        for ((brand, _), op) in brands.iter().zip(&operators) {
            everywhere(
                state,
                op.submit(
                    "add_product",
                    &[
                        brand.as_bytes(),
                        sku.as_bytes(),
                        b"Bench item",
                        b"{}",
                        b"10",
                        b"1000",
                        b"1000000000000",
                    ],
                ),
            )
            .await?;
        }
        for (i, op) in operators.iter().enumerate() {
            let (brand, _) = &brands[i];
            let (next, _) = &brands[(i + 1) % brands.len()];
            everywhere(
                state,
                op.submit("open_shop", &[shop(brand).as_bytes(), b"Bench shop"]),
            )
            .await?;
            everywhere(
                state,
                op.submit(
                    "list_product",
                    &[shop(brand).as_bytes(), next.as_bytes(), sku.as_bytes()],
                ),
            )
            .await?;
            let account = text(op.evaluate("my_account", &[]).await?);
            everywhere(
                state,
                admin.submit("mint", &[account.as_bytes(), b"1000000000000"]),
            )
            .await?;
        }
    }
    // User i buys its brand's product in the previous brand's shop, which lists it.
    Ok((0..brands.len())
        .map(|i| {
            let previous = &brands[(i + brands.len() - 1) % brands.len()].0;
            mercato_sdk::bench::OrderRoute {
                shop: shop(previous),
                brand: brands[i].0.clone(),
                sku: sku.to_owned(),
            }
        })
        .collect())
}

/// Waits until every peer has committed `height` blocks.
pub async fn wait_peers(state: &State, height: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for peer in state.nodes.iter().filter(|n| n.kind == Kind::Peer) {
        let ops = peer.operations.clone().unwrap_or_default();
        loop {
            let at = match crate::network::http_get(&ops, "/metrics").await {
                Ok((_, m)) => crate::network::metric(&m, "mercato_peer_height").unwrap_or(0),
                Err(_) => 0,
            };
            if at >= height {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{} is at height {at}, short of {height}; see {}",
                    peer.name,
                    peer.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn platform(state: &State) -> Result<String> {
    state
        .spec
        .orgs
        .iter()
        .find(|o| o.kind == crate::spec::OrgKind::Platform)
        .map(|o| o.msp_id.clone())
        .ok_or_else(|| anyhow!("no platform organisation"))
}

/// What the demo left on the ledger, for the caller to show or check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DemoOutcome {
    pub run: u32,
    pub order: String,
    pub order_status: String,
    pub personal_shop: String,
    pub buyer_balance: i64,
    pub seller_commission: i64,
    pub platform_fees: i64,
    pub brand_revenue: i64,
    pub blocks_verified: u64,
    pub transactions_verified: u64,
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The commerce flow through the SDK, each step by the member who would do it.
pub async fn run(state: &mut State) -> Result<DemoOutcome> {
    if !state.committed.iter().any(|c| c == "commerce") {
        bail!("the demo needs the commerce chaincode in the spec");
    }
    state.demo_runs += 1;
    let run = state.demo_runs;
    state.save(&state.spec.data_dir.clone())?;
    let channel = state.spec.channel.clone();
    let platform_msp = platform(state)?;
    let brand_org = state
        .spec
        .orgs
        .iter()
        .find(|o| o.kind == crate::spec::OrgKind::Brand)
        .cloned()
        .ok_or_else(|| anyhow!("the demo needs a brand organisation"))?;
    let brand = brand_org.brand.clone().unwrap_or_default();
    let contract = |g: &Gateway| g.network(&channel).contract("commerce");
    let ops = gateway(state, &format!("admin@{platform_msp}")).await?;
    let brand_ops = gateway(state, &format!("{brand}-ops")).await?;
    let seller = gateway(state, "sam").await?;
    let buyer = gateway(state, "bob").await?;
    let auditor = gateway(state, "eve").await?;
    let say = |what: &str| eprintln!("    {what}");

    if contract(&auditor)
        .evaluate("get_config", &[])
        .await
        .is_err()
    {
        step("the platform sets up the marketplace: a 2 % fee, rewards, the brands");
        everywhere(
            state,
            contract(&ops).submit("init", &[platform_msp.as_bytes(), b"200"]),
        )
        .await?;
        everywhere(
            state,
            contract(&ops).submit("set_rewards", &[b"10", b"5", b"0", b"12"]),
        )
        .await?;
        for org in state
            .spec
            .orgs
            .iter()
            .filter(|o| o.kind == crate::spec::OrgKind::Brand)
        {
            let name = org.brand.clone().unwrap_or_default();
            everywhere(
                state,
                contract(&ops).submit("register_brand", &[name.as_bytes(), org.msp_id.as_bytes()]),
            )
            .await?;
            say(&format!("brand {name} registered for {}", org.msp_id));
        }
    }
    let sku = format!("trail-shoe-{run}");
    let shop = format!("sams-picks-{run}");
    let order = format!("order-{run}");
    let buyer_account = format!("{platform_msp}:bob");
    step(&format!(
        "brand {brand} lists a product with sealed attributes"
    ));
    everywhere(
        state,
        contract(&brand_ops).submit(
            "add_product",
            &[
                brand.as_bytes(),
                sku.as_bytes(),
                b"Trail shoe",
                br#"{"colour":"red","size":"42"}"#,
                b"100",
                b"1000",
                b"50",
            ],
        ),
    )
    .await?;
    say(&format!(
        "{brand}/{sku}: 100 coins, 10 % commission, 50 in stock"
    ));
    step("seller sam opens a shop and lists it");
    everywhere(
        state,
        contract(&seller).submit("open_shop", &[shop.as_bytes(), b"Sam's picks"]),
    )
    .await?;
    everywhere(
        state,
        contract(&seller).submit(
            "list_product",
            &[shop.as_bytes(), brand.as_bytes(), sku.as_bytes()],
        ),
    )
    .await?;
    step("buyer bob gets 1000 coins, orders through sam's shop (paid into escrow)");
    everywhere(
        state,
        contract(&ops).submit("mint", &[buyer_account.as_bytes(), b"1000"]),
    )
    .await?;
    let placed = everywhere(
        state,
        contract(&buyer).submit(
            "place_order",
            &[
                order.as_bytes(),
                shop.as_bytes(),
                brand.as_bytes(),
                sku.as_bytes(),
                b"1",
            ],
        ),
    )
    .await?;
    say(&format!(
        "{order} placed in block {}: {}",
        placed.block,
        text(placed.result)
    ));
    step(&format!(
        "brand {brand} ships; bob confirms delivery; the escrow settles"
    ));
    everywhere(
        state,
        contract(&brand_ops).submit("ship_order", &[order.as_bytes(), b"TRACK-0001"]),
    )
    .await?;
    let settled = everywhere(
        state,
        contract(&buyer).submit("confirm_delivery", &[order.as_bytes()]),
    )
    .await?;
    let settled_json: serde_json::Value =
        serde_json::from_slice(&settled.result).unwrap_or_default();
    step("bob reviews the purchase: coins, and a personal shop of his own");
    let review = everywhere(
        state,
        contract(&buyer).submit("review", &[order.as_bytes(), b"5", b"Great shoes"]),
    )
    .await?;
    let personal_shop = text(review.result);
    say(&format!("bob's shop: {personal_shop}"));

    step("the auditor reads the balances and verifies the chain");
    let number = |bytes: Vec<u8>| -> Result<i64> {
        text(bytes)
            .trim()
            .parse()
            .map_err(|e| anyhow!("a balance: {e}"))
    };
    let balance = |account: String| {
        let c = contract(&auditor);
        async move { number(c.evaluate("balance", &[account.as_bytes()]).await?) }
    };
    let buyer_balance = balance(buyer_account).await?;
    let seller_commission = balance(format!("{platform_msp}:sam")).await?;
    let platform_fees = balance("platform:fees".into()).await?;
    let brand_revenue = balance(format!("brand:{brand}")).await?;
    let auditor_user = state
        .users
        .get("eve")
        .ok_or_else(|| anyhow!("no auditor"))?
        .clone();
    let (blocks_verified, transactions_verified) = verify_chain(&auditor_user, &channel).await?;
    Ok(DemoOutcome {
        run,
        order,
        order_status: settled_json["status"].as_str().unwrap_or("?").to_owned(),
        personal_shop,
        buyer_balance,
        seller_commission,
        platform_fees,
        brand_revenue,
        blocks_verified,
        transactions_verified,
    })
}

/// Reads every block from a peer as the auditor (signed Deliver) and checks the chain: each
/// block's number, its previous hash against the block before, and its data hash. Returns the
/// blocks and transactions checked.
pub async fn verify_chain(user: &crate::network::User, channel: &str) -> Result<(u64, u64)> {
    let id = Identity::load(&user.msp_id, &user.msp_dir)?;
    let roots = std::fs::read(&user.tls_root)?;
    let conn = Endpoint::from_shared(format!("https://{}", user.peer))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(roots)))?
        .connect()
        .await?;
    let mut client = DeliverClient::new(conn).max_decoding_message_size(128 << 20);
    let header = Header {
        channel_header: ChannelHeader {
            r#type: HeaderType::DeliverSeekInfo as i32,
            channel_id: channel.to_owned(),
            // Peers refuse a seek stamped more than 15 minutes from their clock, or unstamped.
            timestamp: Some(mercato_peer::orderers::now()),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: SignatureHeader {
            creator: id.serialized().to_vec(),
            nonce: mercato_ca::crypto::random_nonce()?,
        }
        .encode_to_vec(),
    };
    let seek = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(Seek::Oldest(Default::default())),
        }),
        stop: Some(SeekPosition {
            r#type: Some(Seek::Newest(Default::default())),
        }),
        behavior: SeekBehavior::FailIfNotReady as i32,
        ..Default::default()
    };
    let envelope = new_signed_envelope(header, seek.encode_to_vec(), &id)?;
    let mut stream = client
        .deliver(tokio_stream::once(envelope))
        .await?
        .into_inner();
    let (mut blocks, mut txs) = (0u64, 0u64);
    let mut previous: Option<Vec<u8>> = None;
    while let Some(reply) =
        tokio::time::timeout(Duration::from_secs(30), stream.message()).await??
    {
        match reply.r#type {
            Some(Reply::Block(block)) => {
                check_block(&block, blocks, previous.as_deref())?;
                let h = block
                    .header
                    .as_ref()
                    .ok_or_else(|| anyhow!("block without a header"))?;
                previous = Some(mercato_proto::hash::sha256(&block_header_bytes(h)).to_vec());
                txs += block
                    .data
                    .as_ref()
                    .map(|d| d.data.len() as u64)
                    .unwrap_or(0);
                blocks += 1;
            }
            Some(Reply::Status(200)) => break,
            Some(Reply::Status(s)) => bail!("the peer ended the chain read with status {s}"),
            _ => bail!("an empty deliver response"),
        }
    }
    Ok((blocks, txs))
}

fn check_block(block: &Block, number: u64, previous: Option<&[u8]>) -> Result<()> {
    let h = block
        .header
        .as_ref()
        .ok_or_else(|| anyhow!("block {number} has no header"))?;
    if h.number != number {
        bail!("block {number} came as number {}", h.number);
    }
    if let Some(previous) = previous
        && h.previous_hash != previous
    {
        bail!(
            "block {number}'s previous hash does not match block {}",
            number - 1
        );
    }
    let envelopes = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    if h.data_hash != data_hash(envelopes.iter().map(Vec::as_slice)) {
        bail!("block {number}'s data hash does not match its transactions");
    }
    Ok(())
}
