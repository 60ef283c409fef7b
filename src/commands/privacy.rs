//! `shopmind privacy erase|sweep` (docs/PRIVACY.md).

use clap::Subcommand;
use shopmind_config::Config;
use shopmind_domain::UnixMillis;
use shopmind_feature::erase::{Customer, erase_customer};
use shopmind_runtime::connect::{self, Embedded};

#[derive(Subcommand)]
pub enum PrivacyAction {
    /// Erases a customer: their events in every stream, their features, sessions, conversations,
    /// notification state and dedup entries; later training rounds exclude them. Prints what
    /// was removed, per kind.
    Erase {
        #[arg(long)]
        tenant: String,
        /// The shop's customer id (pseudonymised here for tenants that pseudonymise).
        #[arg(long)]
        user: String,
    },
    /// Deletes raw events and conversations older than each tenant's limits
    /// (`privacy.tenants.<t>.events_max_age_days`, `conversations_max_age_days`). Run it
    /// periodically (the `privacy-sweep` CronJob in deploy/).
    Sweep,
}

pub async fn run(action: PrivacyAction, config: Config) -> anyhow::Result<()> {
    let bus = connect::bus(&config, "privacy", Embedded::Forbidden).await?;
    let store = connect::store(&config, "privacy", Embedded::Forbidden).await?;
    connect::ensure_streams(&*bus, &config).await?;
    match action {
        PrivacyAction::Erase { tenant, user } => {
            let customer = Customer::from_config(&config, &tenant, &user)?;
            let report = erase_customer(&*bus, &*store, &customer).await?;
            println!("erased the customer of tenant {tenant}:");
            for (what, count) in &report.removed {
                println!("  {what:<22} {count}");
            }
            println!("  {:<22} {}", "total", report.total());
        }
        PrivacyAction::Sweep => {
            let report =
                shopmind_feature::retention::sweep(&config, &*bus, &*store, UnixMillis::now()).await?;
            if report.tenants.is_empty() {
                println!("nothing older than a tenant's limit");
            }
            for (tenant, (messages, conversations)) in &report.tenants {
                println!(
                    "{tenant}: {messages} messages deleted, {conversations} conversation keys given a TTL"
                );
            }
        }
    }
    Ok(())
}
