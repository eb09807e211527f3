//! Every refusal: the wrong role, the wrong owner, too little money or stock, a second review, a
//! changed attribute, an overflow, bad input. Each leaves the ledger unchanged.

use super::{ACME, AUDITOR, Actor, BUYER, BUYER2, Market, OTHER_BRAND, PLATFORM, SELLER};

#[test]
fn the_contract_is_initialised_once_by_the_platforms_admin() {
    let mut m = Market::empty();
    m.refused(
        BUYER,
        &["register_brand", "acme", "Brand1MSP"],
        412,
        "not initialised",
    );
    m.refused(
        BUYER,
        &["init", "PlatformMSP", "200"],
        403,
        "admin of the platform",
    );
    m.refused(
        PLATFORM,
        &["init", "PlatformMSP", "9000"],
        400,
        "at most 3000",
    );
    m.ok(PLATFORM, &["init", "PlatformMSP", "200"]);
    m.refused(
        PLATFORM,
        &["init", "PlatformMSP", "200"],
        409,
        "already initialised",
    );
    assert_eq!(m.json(AUDITOR, &["get_config"])["fee_bps"], 200);
}

#[test]
fn each_role_is_held_to_its_own_rights() {
    let mut m = Market::new();
    let cases: &[(Actor, &[&str], i32, &str)] = &[
        // Only the platform mints, registers brands and sets rules.
        (
            BUYER,
            &["mint", "SellersMSP:bob", "5"],
            403,
            "not the platform",
        ),
        (
            ACME,
            &["register_brand", "evil", "Brand1MSP"],
            403,
            "not the platform",
        ),
        (
            SELLER,
            &["set_rewards", "1", "1", "1", "1"],
            403,
            "not the platform",
        ),
        (SELLER, &["set_fee", "0"], 403, "not the platform"),
        (
            BUYER,
            &["add_arbiter", "SellersMSP:bob"],
            403,
            "not the platform",
        ),
        // A brand acts only for itself.
        (
            OTHER_BRAND,
            &["add_product", "acme", "fake", "Fake", "{}", "1", "0", "1"],
            403,
            "does not act for brand acme",
        ),
        (
            BUYER,
            &["add_product", "acme", "x", "X", "{}", "1", "0", "1"],
            403,
            "does not act for brand acme",
        ),
        (
            OTHER_BRAND,
            &["update_product", "acme", "shoe", "1", "0"],
            403,
            "does not act for brand acme",
        ),
        (
            SELLER,
            &["restock", "acme", "shoe", "5"],
            403,
            "does not act for brand acme",
        ),
        (
            OTHER_BRAND,
            &["register_item", "acme", "shoe", "SN-9"],
            403,
            "does not act for brand acme",
        ),
        // A brand member whose certificate names another brand.
        (
            (
                "Brand1MSP",
                "mallory",
                "client",
                &[("role", "brand"), ("brand", "zeta")],
            ),
            &["update_product", "acme", "shoe", "1", "0"],
            403,
            "does not act for brand acme",
        ),
        // Sellers act only for their own shop.
        (
            BUYER,
            &["list_product", "sams", "acme", "shoe"],
            403,
            "not SellersMSP:bob's",
        ),
        (
            BUYER,
            &["unlist_product", "sams", "acme", "shoe"],
            403,
            "not SellersMSP:bob's",
        ),
        // Nobody spends another's coins.
        (
            BUYER,
            &["transfer", "SellersMSP:cat", "SellersMSP:bob", "5"],
            403,
            "may not spend from SellersMSP:cat",
        ),
        (
            OTHER_BRAND,
            &["transfer", "brand:acme", "SellersMSP:bob", "5"],
            403,
            "may not spend from brand:acme",
        ),
        (
            SELLER,
            &["transfer", "platform:fees", "SellersMSP:sam", "5"],
            403,
            "may not spend from platform:fees",
        ),
    ];
    for (who, args, status, says) in cases {
        m.refused(*who, args, *status, says);
    }
    // A brand's admin acts for it without a role attribute.
    m.ok(
        ("Brand1MSP", "admin", "admin", &[]),
        &["restock", "acme", "shoe", "5"],
    );
}

#[test]
fn auditors_read_everything_and_write_nothing() {
    let mut m = Market::new();
    for args in [
        &["open_shop", "eves", "Eve's"][..],
        &["place_order", "o9", "sams", "acme", "shoe", "1"],
        &["transfer", "AuditMSP:eve", "SellersMSP:bob", "1"],
        &["burn", "1"],
        &["custody", "SN-1", "received", ""],
    ] {
        m.refused(AUDITOR, args, 403, "auditors are read-only");
    }
    // An auditor attribute counts too.
    m.refused(
        ("SellersMSP", "audrey", "client", &[("role", "auditor")]),
        &["open_shop", "a", "A"],
        403,
        "read-only",
    );
    assert_eq!(m.balance("SellersMSP:bob"), 1000);
    m.ok(AUDITOR, &["get_product", "acme", "shoe"]);
    m.ok(AUDITOR, &["get_shop", "sams"]);
    m.ok(AUDITOR, &["sales", "brand", "acme", "10", ""]);
}

#[test]
fn orders_need_money_stock_a_listing_and_the_right_hands() {
    let mut m = Market::new();
    // Too little money: 11 × 100 > 1000. On a peer the commit marks it DELTA_BOUND_VIOLATION.
    m.refused(
        BUYER,
        &["place_order", "o1", "sams", "acme", "shoe", "11"],
        409,
        "below its bound",
    );
    // Too little stock: 60 > 50 (cat is given enough coins first).
    m.ok(PLATFORM, &["mint", "SellersMSP:cat", "10000"]);
    m.refused(
        BUYER2,
        &["place_order", "o1", "sams", "acme", "shoe", "60"],
        409,
        "below its bound",
    );
    m.refused(
        BUYER,
        &["place_order", "o1", "sams", "acme", "boot", "1"],
        404,
        "does not list boot",
    );
    m.refused(
        BUYER,
        &["place_order", "o1", "nope", "acme", "shoe", "1"],
        404,
        "no shop nope",
    );
    m.refused(
        BUYER,
        &["place_order", "o1", "sams", "acme", "shoe", "0"],
        400,
        "positive",
    );
    m.refused(
        SELLER,
        &["place_order", "o1", "sams", "acme", "shoe", "1"],
        403,
        "owns shop sams",
    );
    m.refused(
        BUYER,
        &["place_order", "bad id!", "sams", "acme", "shoe", "1"],
        400,
        "order",
    );

    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.refused(
        BUYER2,
        &["place_order", "o1", "sams", "acme", "shoe", "1"],
        409,
        "already exists",
    );
    m.refused(
        OTHER_BRAND,
        &["ship_order", "o1", "T"],
        403,
        "does not act for brand acme",
    );
    m.refused(
        BUYER2,
        &["cancel_order", "o1"],
        403,
        "only the buyer or brand",
    );
    m.refused(BUYER, &["confirm_delivery", "o1"], 412, "shipped");
    m.refused(BUYER, &["review", "o1", "5", "early"], 412, "settled");
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.refused(ACME, &["ship_order", "o1", "T"], 412, "placed");
    m.refused(BUYER2, &["confirm_delivery", "o1"], 403, "only the buyer");
    m.refused(BUYER2, &["open_dispute", "o1", "x"], 403, "only the buyer");
    m.ok(BUYER, &["confirm_delivery", "o1"]);
    // Only the verified purchaser reviews, once, with a rating of 1 to 5.
    m.refused(
        BUYER2,
        &["review", "o1", "1", "fake"],
        403,
        "verified purchase",
    );
    m.refused(BUYER, &["review", "o1", "9", "x"], 400, "rating");
    m.refused(BUYER, &["review", "o1", "5", ""], 400, "empty");
    m.ok(BUYER, &["review", "o1", "5", "good"]);
    m.refused(
        BUYER,
        &["review", "o1", "5", "again"],
        409,
        "already reviewed",
    );
}

#[test]
fn attributes_never_change_and_amounts_never_overflow() {
    let mut m = Market::new();
    m.refused(
        ACME,
        &[
            "add_product",
            "acme",
            "shoe",
            "Trail shoe",
            r#"{"colour":"blue","size":"42"}"#,
            "100",
            "1000",
            "0",
        ],
        409,
        "attributes are immutable",
    );
    m.refused(
        ACME,
        &[
            "add_product",
            "acme",
            "shoe",
            "Trail shoe",
            r#"{"colour":"red","size":"42"}"#,
            "100",
            "1000",
            "0",
        ],
        409,
        "already exists",
    );
    m.refused(
        ACME,
        &["add_product", "acme", "x", "X", "not json", "1", "0", "0"],
        400,
        "not valid JSON",
    );
    m.refused(
        ACME,
        &["add_product", "acme", "x", "X", "{}", "0", "0", "0"],
        400,
        "price must be positive",
    );
    m.refused(
        ACME,
        &["add_product", "acme", "x", "X", "{}", "1", "6000", "0"],
        400,
        "at most 5000",
    );
    m.refused(
        ACME,
        &["add_product", "acme", "x", "", "{}", "1", "0", "0"],
        400,
        "name is empty",
    );
    m.refused(
        ACME,
        &["restock", "acme", "shoe", "-51"],
        409,
        "below its bound",
    );

    // Coins: a mint past i64::MAX, an amount past it, zero, and a balance below zero.
    // The supply is 2 000 already: this brings it to i64::MAX.
    m.ok(
        PLATFORM,
        &["mint", "SellersMSP:dan", &(i64::MAX - 2000).to_string()],
    );
    m.refused(PLATFORM, &["mint", "SellersMSP:dan", "1"], 409, "overflow");
    m.refused(
        PLATFORM,
        &["mint", "SellersMSP:bob", &(i64::MAX as u64 + 1).to_string()],
        400,
        "too large",
    );
    m.refused(PLATFORM, &["mint", "SellersMSP:bob", "0"], 400, "positive");
    m.refused(PLATFORM, &["mint", "bob", "5"], 400, "MSPID:NAME");
    m.refused(
        BUYER,
        &["transfer", "SellersMSP:bob", "SellersMSP:cat", "1001"],
        409,
        "below its bound",
    );
    m.refused(BUYER, &["burn", "1001"], 409, "below its bound");
    // A huge order: price × quantity overflows.
    m.ok(
        ACME,
        &[
            "add_product",
            "acme",
            "yacht",
            "Yacht",
            "{}",
            &(u64::MAX / 2).to_string(),
            "0",
            "10",
        ],
    );
    m.ok(SELLER, &["list_product", "sams", "acme", "yacht"]);
    m.refused(
        BUYER,
        &["place_order", "o1", "sams", "acme", "yacht", "3"],
        400,
        "overflows",
    );

    m.ok(
        BUYER,
        &["transfer", "SellersMSP:bob", "SellersMSP:cat", "400"],
    );
    m.ok(BUYER, &["burn", "100"]);
    assert_eq!(m.balance("SellersMSP:bob"), 500);
    assert_eq!(m.balance("SellersMSP:cat"), 1400);
}

#[test]
fn shops_are_unique_and_personal_shops_list_only_what_was_bought() {
    let mut m = Market::new();
    m.refused(BUYER, &["open_shop", "sams", "Mine"], 409, "already exists");
    m.refused(
        BUYER,
        &["open_shop", "@SellersMSP:bob", "Mine"],
        400,
        "personal",
    );
    m.refused(
        SELLER,
        &["list_product", "sams", "acme", "boot"],
        404,
        "no product boot",
    );
    m.ok(
        ACME,
        &["add_product", "acme", "boot", "Boot", "{}", "50", "0", "5"],
    );
    m.ok(BUYER, &["place_order", "o1", "sams", "acme", "shoe", "1"]);
    m.ok(ACME, &["ship_order", "o1", "T"]);
    m.ok(BUYER, &["confirm_delivery", "o1"]);
    m.ok(BUYER, &["review", "o1", "4", "ok"]);
    m.refused(
        BUYER,
        &["list_product", "@SellersMSP:bob", "acme", "boot"],
        403,
        "resells only what its owner bought",
    );
    m.ok(BUYER, &["list_product", "@SellersMSP:bob", "acme", "shoe"]);
}

#[test]
fn garbage_arguments_are_refused_with_the_reason() {
    let mut m = Market::new();
    m.refused(BUYER, &["nope"], 400, "nope");
    m.refused(BUYER, &["place_order", "o1"], 400, "");
    m.refused(
        BUYER,
        &["place_order", "o1", "sams", "acme", "shoe", "-1"],
        400,
        "not a u64",
    );
    m.refused(BUYER, &["open_shop", &"x".repeat(65), "X"], 400, "shop");
    m.refused(BUYER, &["open_shop", "a\u{0}b", "X"], 400, "shop");
    m.refused(BUYER, &["open_shop", "ok", &"n".repeat(2001)], 400, "limit");
    m.refused(
        AUDITOR,
        &["sales", "planet", "x", "1", ""],
        400,
        "brand or shop",
    );
    m.refused(
        AUDITOR,
        &["sales", "brand", "acme", "1", "elsewhere"],
        400,
        "bookmark",
    );
    m.refused(AUDITOR, &["get_order", "missing"], 404, "no order");
    m.refused(AUDITOR, &["provenance", "missing"], 404, "no item");
}
