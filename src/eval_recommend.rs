//! `shopmind eval --task recommend`.

use crate::eval::EvalArgs;

pub async fn run(_args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`shopmind eval --task recommend` is not built yet")
}
