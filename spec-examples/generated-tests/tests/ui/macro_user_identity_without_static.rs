// Through the proc macro, a capability called without the user's identity must name the
// static identity it is called with instead (OAS-C4): the spec's error becomes a compile
// error that shows the located diagnostic, and the module expands to nothing usable.
#[agentc::agent(spec = "specs/user_identity_without_static.yaml")]
mod hr_agents {}

fn main() {}
