//! The operator tools, one file a command: `demo`, `dlq`, `models`, `notifications`, `privacy`,
//! `replay`, `simulate`, `train`. (`bench` and `eval` have folders of their own.)

pub mod demo;
pub mod dlq;
pub mod models;
pub mod notifications;
pub mod privacy;
pub mod replay;
pub mod simulate;
pub mod train;
