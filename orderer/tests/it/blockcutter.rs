//! Fabric's block cutting rules, case by case, and the batch timer.

use std::time::Duration;

use mercato_orderer::BatchConfig;
use mercato_orderer::blockcutter::{Action, Batcher, BlockCutter};

fn config(count: u32, preferred: u32) -> BatchConfig {
    BatchConfig {
        max_message_count: count,
        absolute_max_bytes: 1000,
        preferred_max_bytes: preferred,
        batch_timeout: Duration::from_millis(50),
    }
}

fn env(tag: u8, size: usize) -> Vec<u8> {
    vec![tag; size]
}

/// Feeds envelopes (tag, size) and returns, per envelope, the batches cut (as tags) and whether
/// envelopes still wait.
fn feed(cutter: &mut BlockCutter, envs: &[(u8, usize)]) -> Vec<(Vec<Vec<u8>>, bool)> {
    envs.iter()
        .map(|&(tag, size)| {
            let o = cutter.ordered(env(tag, size));
            let batches = o
                .batches
                .iter()
                .map(|b| b.iter().map(|e| e[0]).collect())
                .collect();
            (batches, o.pending)
        })
        .collect()
}

#[test]
fn the_cutting_rules() {
    // (max count, preferred bytes, envelopes, expected per envelope)
    type Case = (u32, u32, Vec<(u8, usize)>, Vec<(Vec<Vec<u8>>, bool)>);
    let cases: Vec<Case> = vec![
        // Envelopes wait until the batch holds max_message_count.
        (
            3,
            100,
            vec![(1, 10), (2, 10), (3, 10), (4, 10)],
            vec![
                (vec![], true),
                (vec![], true),
                (vec![vec![1, 2, 3]], false),
                (vec![], true),
            ],
        ),
        // One that would take the batch past preferred_max_bytes cuts the batch first.
        (
            10,
            100,
            vec![(1, 60), (2, 60)],
            vec![(vec![], true), (vec![vec![1]], true)],
        ),
        // Exactly preferred_max_bytes still fits.
        (
            10,
            100,
            vec![(1, 50), (2, 50), (3, 1)],
            vec![(vec![], true), (vec![], true), (vec![vec![1, 2]], true)],
        ),
        // One larger than preferred_max_bytes goes alone, after the pending batch.
        (
            10,
            100,
            vec![(1, 10), (2, 150), (3, 10)],
            vec![
                (vec![], true),
                (vec![vec![1], vec![2]], false),
                (vec![], true),
            ],
        ),
        // Alone with nothing pending: one block of its own.
        (10, 100, vec![(9, 500)], vec![(vec![vec![9]], false)]),
        // max_message_count 1: every envelope is a block.
        (
            1,
            100,
            vec![(1, 10), (2, 10)],
            vec![(vec![vec![1]], false), (vec![vec![2]], false)],
        ),
    ];
    for (i, (count, preferred, envs, want)) in cases.into_iter().enumerate() {
        let mut cutter = BlockCutter::new(config(count, preferred));
        assert_eq!(feed(&mut cutter, &envs), want, "case {i}");
    }
}

#[test]
fn cut_takes_whatever_waits() {
    let mut cutter = BlockCutter::new(config(10, 100));
    cutter.ordered(env(1, 10));
    cutter.ordered(env(2, 10));
    assert_eq!(cutter.cut(), vec![env(1, 10), env(2, 10)]);
    assert!(cutter.cut().is_empty());
    // The byte count starts again: two more 50s fit.
    assert!(cutter.ordered(env(3, 50)).batches.is_empty());
    assert!(cutter.ordered(env(4, 50)).batches.is_empty());
}

#[test]
fn the_batch_timer_cuts_a_waiting_batch_and_stale_timers_do_nothing() {
    let mut b = Batcher::new(config(3, 100));
    let timeout = Duration::from_millis(50);
    // The first envelope of a batch arms a timer; the next ones do not.
    assert_eq!(
        b.envelope(env(1, 10)),
        vec![Action::ArmTimer {
            generation: 0,
            after: timeout
        }]
    );
    assert_eq!(b.envelope(env(2, 10)), vec![]);
    // The timer fires: the batch is cut; firing again does nothing.
    assert_eq!(
        b.timer_fired(0),
        vec![Action::Cut(vec![env(1, 10), env(2, 10)])]
    );
    assert_eq!(b.timer_fired(0), vec![]);
    // A batch cut by count makes its timer stale; the next batch gets a new one.
    assert_eq!(
        b.envelope(env(3, 10)),
        vec![Action::ArmTimer {
            generation: 1,
            after: timeout
        }]
    );
    b.envelope(env(4, 10));
    assert_eq!(
        b.envelope(env(5, 10)),
        vec![Action::Cut(vec![env(3, 10), env(4, 10), env(5, 10)])]
    );
    assert_eq!(b.timer_fired(1), vec![]);
    assert_eq!(b.pending(), 0);
    // An envelope that cuts the pending batch and then waits itself arms a fresh timer.
    b.envelope(env(6, 60));
    assert_eq!(
        b.envelope(env(7, 60)),
        vec![
            Action::Cut(vec![env(6, 60)]),
            Action::ArmTimer {
                generation: 3,
                after: timeout
            }
        ]
    );
    assert_eq!(b.timer_fired(2), vec![]);
    assert_eq!(b.timer_fired(3), vec![Action::Cut(vec![env(7, 60)])]);
}

#[test]
fn batch_settings_are_validated() {
    assert!(BatchConfig::default().validate().is_ok());
    for (edit, says) in [
        (
            Box::new(|c: &mut BatchConfig| c.max_message_count = 0)
                as Box<dyn Fn(&mut BatchConfig)>,
            "max_message_count",
        ),
        (
            Box::new(|c| c.preferred_max_bytes = c.absolute_max_bytes + 1),
            "preferred_max_bytes",
        ),
        (
            Box::new(|c| c.preferred_max_bytes = 0),
            "preferred_max_bytes",
        ),
        (
            Box::new(|c| c.absolute_max_bytes = 200 << 20),
            "absolute_max_bytes",
        ),
        (Box::new(|c| c.batch_timeout = Duration::ZERO), "timeout"),
        (
            Box::new(|c| c.batch_timeout = Duration::from_secs(61)),
            "timeout",
        ),
    ] {
        let mut c = BatchConfig::default();
        edit(&mut c);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(says), "{e} should name {says}");
    }
}
