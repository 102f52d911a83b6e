//! `aimarket-hub run` (issue #17) against the demo: the walkthrough's one-line task is
//! planned with the hub's discover, paid from a demo channel, run as a pipeline of two demo
//! capabilities, its bill verified and the channel refunded.

use aimarket_hub::cli::RunArgs;
use aimarket_hub::cli::run::run_task;
use aimarket_hub::demo::run::WALKTHROUGH_TASK;

use crate::demo::running_demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_run_line_composes_two_capabilities_and_refunds() {
    let (demo, _data) = running_demo().await;
    assert!(
        demo.walkthrough()
            .contains(&format!("aimarket-hub run \"{WALKTHROUGH_TASK}\""))
    );
    let args = RunArgs {
        task: WALKTHROUGH_TASK.to_owned(),
        budget: 1.0,
        hub: demo.hub_url().to_owned(),
        yes: true,
    };
    let mut shown = String::new();
    let report = run_task(reqwest::Client::new(), &args, |plan| {
        shown = plan.to_owned();
        true
    })
    .await
    .unwrap();
    assert!(shown.contains("translate.morse@v1"), "{shown}");
    assert!(shown.contains("analyze.sentiment@v1"), "{shown}");
    assert!(report.success, "{}\n{}", report.text, report.answer);
    assert!(report.bill_verified);
    let steps = report.answer["bill_of_materials"]["steps"]
        .as_array()
        .unwrap();
    assert_eq!(steps.len(), 2);
    let spent = report.answer["bill_of_materials"]["total_usd"]
        .as_f64()
        .unwrap();
    assert!(spent > 0.0, "{}", report.answer);
    assert!(
        (report.refund_usd - (1.0 - spent)).abs() < 1e-6,
        "{}",
        report.text
    );

    // Refused at confirmation: nothing is opened or spent.
    let refused = run_task(reqwest::Client::new(), &args, |_| false).await;
    assert!(refused.unwrap_err().contains("not confirmed"));
    // A tiny budget: the planner keeps to it (free matches) or refuses; never spends more.
    let poor = RunArgs {
        budget: 0.000001,
        ..args
    };
    match run_task(reqwest::Client::new(), &poor, |_| true).await {
        Ok(r) => {
            let total = r.answer["bill_of_materials"]["total_usd"].as_f64().unwrap();
            assert!(total <= 0.000001, "{}", r.text);
        }
        Err(e) => assert!(
            e.contains("above the budget") || e.contains("no capability"),
            "{e}"
        ),
    }
    demo.stop().await;
}
