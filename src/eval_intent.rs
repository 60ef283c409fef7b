//! `shopmind eval --task intent`.

use crate::eval::EvalArgs;

pub async fn run(_args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`shopmind eval --task intent` is not built yet")
}
