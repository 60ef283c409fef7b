//! `shopmind eval --task demand`.

use crate::eval::EvalArgs;

pub async fn run(_args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`shopmind eval --task demand` is not built yet")
}
