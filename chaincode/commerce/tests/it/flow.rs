//! The commerce flow end to end: order, escrow, shipping, settlement and its split, the sales
//! ledger, reviews with personal shops and rewards, cancellations, disputes, traceability.

use super::{ACME, AUDITOR, BUYER, BUYER2, Market, PLATFORM, SELLER};

#[test]
fn an_order_is_escrowed_shipped_confirmed_and_settled_three_ways() {
    let mut m = Market::new();
    let order = m.json(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "3"]);
    assert_eq!(order["total"], 300);
    assert_eq!(order["status"], "placed");
    // The coins are in escrow, the stock reserved.
    assert_eq!(m.balance("SellersMSP:bob"), 700);
    assert_eq!(m.number(AUDITOR, &["stock", "acme", "shoe"]), 47);
    assert_eq!(m.last_event(), "order.placed");

    m.ok(ACME, &["ship_order", "o1", "TRACK-1"]);
    let settled = m.json(BUYER, &["confirm_delivery", "o1"]);
    assert_eq!(settled["status"], "settled");
    // 300 coins: 2 % fee = 6, 10 % commission = 30, the brand gets the rest.
    assert_eq!(m.balance("platform:fees"), 6);
    assert_eq!(m.balance("SellersMSP:sam"), 30);
    assert_eq!(m.balance("brand:acme"), 264);
    assert_eq!(m.number(AUDITOR, &["supply"]), 2000);
    assert_eq!(m.last_event(), "order.settled");

    // The sales ledger, for the brand and for the shop.
    for (kind, name) in [("brand", "acme"), ("shop", "sams")] {
        let page = m.json(AUDITOR, &["sales", kind, name, "10", ""]);
        assert_eq!(page["total"], 300);
        assert_eq!(page["count"], 1);
        assert_eq!(page["sales"][0]["order"], "o1");
        assert_eq!(page["sales"][0]["commission"], 30);
        assert_eq!(page["sales"][0]["brand_revenue"], 264);
    }

    // The brand spends its revenue; the platform its fees.
    m.ok(ACME, &["transfer", "brand:acme", "SellersMSP:sam", "64"]);
    m.ok(
        PLATFORM,
        &["transfer", "platform:fees", "SellersMSP:sam", "6"],
    );
    assert_eq!(m.balance("SellersMSP:sam"), 100);
}

#[test]
fn a_review_earns_coins_and_a_personal_shop_that_resells_what_was_bought() {
    let mut m = Market::new();
    m.ok(PLATFORM, &["set_rewards", "10", "5", "0", "12"]);
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.ok(BUYER, &["confirm_delivery", "o1"]);
    // 1000 - 100 + 10 for the verified purchase.
    assert_eq!(m.balance("SellersMSP:bob"), 910);
    let shop = String::from_utf8(m.ok(BUYER, &["review", "o1", "5", "Great shoes"])).unwrap();
    assert_eq!(shop, "@SellersMSP:bob");
    // The review's 5 is capped at 12 - 10 = 2 for the day.
    assert_eq!(m.balance("SellersMSP:bob"), 912);
    let view = m.json(AUDITOR, &["get_shop", "@SellersMSP:bob"]);
    assert_eq!(view["personal"], true);
    assert_eq!(view["owner"], "SellersMSP:bob");
    assert_eq!(view["listings"][0][1], "shoe");

    // Cat buys through bob's personal shop; bob earns the commission.
    m.ok(
        BUYER2,
        &["place_order", "o2", "@SellersMSP:bob", "acme", "shoe", "1"],
    );
    m.ok(ACME, &["ship_order", "o2", "T2"]);
    m.ok(BUYER2, &["confirm_delivery", "o2"]);
    assert_eq!(m.balance("SellersMSP:bob"), 912 + 10);

    // The next day the cap starts again.
    m.next_day();
    m.ok(BUYER, &["place_order", "o3", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o3", "T3"]);
    m.ok(BUYER, &["confirm_delivery", "o3"]);
    m.ok(BUYER, &["review", "o3", "4", "Still great"]);
    assert_eq!(m.balance("SellersMSP:bob"), 922 - 100 + 10 + 2);
}

#[test]
fn per_sale_rewards_go_to_the_shop_owner() {
    let mut m = Market::new();
    m.ok(PLATFORM, &["set_rewards", "0", "0", "7", "100"]);
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.ok(BUYER, &["confirm_delivery", "o1"]);
    assert_eq!(m.balance("SellersMSP:sam"), 10 + 7);
    assert_eq!(m.number(AUDITOR, &["supply"]), 2007);
}

#[test]
fn cancelling_before_shipping_returns_escrow_and_stock() {
    let mut m = Market::new();
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "2"]);
    m.ok(BUYER, &["cancel_order", "o1"]);
    assert_eq!(m.balance("SellersMSP:bob"), 1000);
    assert_eq!(m.number(AUDITOR, &["stock", "acme", "shoe"]), 50);
    // The brand may cancel too.
    m.ok(BUYER, &["place_order", "o2", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["cancel_order", "o2"]);
    assert_eq!(m.balance("SellersMSP:bob"), 1000);
    // Not once shipped.
    m.ok(BUYER, &["place_order", "o3", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o3", "T"]);
    m.refused(BUYER, &["cancel_order", "o3"], 412, "shipped");
}

#[test]
fn a_dispute_is_decided_by_a_majority_of_the_arbiters() {
    let mut m = Market::new();
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.refused(
        BUYER,
        &["open_dispute", "o1", "never arrived"],
        412,
        "no arbiters",
    );
    let a1 = ("PlatformMSP", "judge1", "client", &[][..]);
    let a2 = ("PlatformMSP", "judge2", "client", &[][..]);
    let a3 = ("PlatformMSP", "judge3", "client", &[][..]);
    for a in [
        "PlatformMSP:judge1",
        "PlatformMSP:judge2",
        "PlatformMSP:judge3",
    ] {
        m.ok(PLATFORM, &["add_arbiter", a]);
    }
    m.ok(BUYER, &["open_dispute", "o1", "never arrived"]);
    m.refused(SELLER, &["vote", "o1", "false"], 403, "not an arbiter");
    m.ok(a1, &["vote", "o1", "true"]);
    m.refused(a1, &["vote", "o1", "true"], 409, "already voted");
    m.ok(a2, &["vote", "o1", "false"]);
    assert_eq!(m.json(AUDITOR, &["get_order", "o1"])["status"], "disputed");
    let decided = m.json(a3, &["vote", "o1", "true"]);
    assert_eq!(decided["status"], "refunded");
    assert_eq!(m.balance("SellersMSP:bob"), 1000);
    assert_eq!(m.balance("brand:acme"), 0);

    // Released by a majority: settled as a confirmation would.
    m.ok(BUYER, &["place_order", "o2", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o2", "T"]);
    m.ok(BUYER, &["open_dispute", "o2", "scuffed"]);
    m.ok(a1, &["vote", "o2", "false"]);
    assert_eq!(m.json(a3, &["vote", "o2", "false"])["status"], "settled");
    assert_eq!(m.balance("brand:acme"), 88);
    m.refused(a2, &["vote", "o2", "true"], 412, "settled");
}

#[test]
fn an_items_chain_of_custody_is_recorded_by_whoever_holds_it() {
    let mut m = Market::new();
    m.ok(ACME, &["register_item", "acme", "shoe", "SN-1"]);
    m.ok(ACME, &["custody", "SN-1", "shipped", "SellersMSP:sam"]);
    m.refused(
        BUYER,
        &["custody", "SN-1", "received", ""],
        403,
        "handed to SellersMSP:sam",
    );
    m.refused(
        ACME,
        &["custody", "SN-1", "sold", "SellersMSP:bob"],
        412,
        "received first",
    );
    m.ok(SELLER, &["custody", "SN-1", "received", ""]);
    m.refused(
        ACME,
        &["custody", "SN-1", "shipped", "SellersMSP:bob"],
        403,
        "does not hold",
    );
    m.ok(SELLER, &["custody", "SN-1", "sold", "SellersMSP:bob"]);
    m.ok(BUYER, &["custody", "SN-1", "received", ""]);
    m.ok(BUYER, &["custody", "SN-1", "returned", "brand:acme"]);
    m.ok(ACME, &["custody", "SN-1", "received", ""]);
    let p = m.json(AUDITOR, &["provenance", "SN-1"]);
    assert_eq!(p["unbroken"], true);
    assert_eq!(p["holder"], "brand:acme");
    let kinds: Vec<&str> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "made", "shipped", "received", "sold", "received", "returned", "received"
        ]
    );
    m.refused(
        ACME,
        &["register_item", "acme", "shoe", "SN-1"],
        409,
        "already registered",
    );
    m.refused(
        ACME,
        &["custody", "SN-1", "lost", "x:y"],
        400,
        "custody event",
    );
}

#[test]
fn products_can_be_verified_against_their_sealed_attributes() {
    let mut m = Market::new();
    assert_eq!(
        m.ok(
            AUDITOR,
            &[
                "verify_product",
                "acme",
                "shoe",
                r#"{"size":"42","colour":"red"}"#
            ]
        ),
        b"true"
    );
    assert_eq!(
        m.ok(
            AUDITOR,
            &[
                "verify_product",
                "acme",
                "shoe",
                r#"{"size":"43","colour":"red"}"#
            ]
        ),
        b"false"
    );
    // Price and commission change; the attributes and their hash stay.
    let before = m.json(AUDITOR, &["get_product", "acme", "shoe"]);
    m.ok(ACME, &["update_product", "acme", "shoe", "120", "500"]);
    let after = m.json(AUDITOR, &["get_product", "acme", "shoe"]);
    assert_eq!(after["price"], 120);
    assert_eq!(after["attributes_hash"], before["attributes_hash"]);
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    assert_eq!(m.balance("SellersMSP:bob"), 880);
}

#[test]
fn an_even_number_of_arbiters_sits_as_an_odd_panel() {
    let mut m = Market::new();
    for a in ["PlatformMSP:judge1", "PlatformMSP:judge2"] {
        m.ok(PLATFORM, &["add_arbiter", a]);
    }
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.ok(BUYER, &["open_dispute", "o1", "damaged"]);
    // Two arbiters: the panel is one, so one vote decides and no tie can lock the escrow.
    let panel = m.json(AUDITOR, &["get_order", "o1"])["dispute"]["arbiters"].clone();
    assert_eq!(panel.as_array().unwrap().len(), 1);
    let judge = ("PlatformMSP", "judge1", "client", &[][..]);
    assert_eq!(m.json(judge, &["vote", "o1", "true"])["status"], "refunded");
}
