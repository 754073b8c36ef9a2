//! `[mail.policy]`: the anti-spam checks of the mail router, each on or off
//! and scored; defaults fit a home backup MX. Each key's default and bounds
//! are declared here, once.

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
