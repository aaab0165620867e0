// Only the generated crate can say which agent may use which capability: `AllowedFor` is
// sealed, so code outside cannot grant hr_agent a tool of its own.
struct Shell;

impl hr::AllowedFor<hr::agents::hr_agent> for Shell {}

fn main() {}
