//! One call of a capability as the engagement keeps it: the JSON it was made with, and
//! the CEL value of `{inputs, outputs?}`, built from that JSON only when something
//! interprets it. At the bottom of the runtime: the engagement records these, and a check
//! reads them ([`crate::check::FieldLookup::Invocation`]) without knowing the engagement.

use std::sync::{Arc, LazyLock, OnceLock};

use agentc_cel::engagement::field;
use agentc_cel::{MapKey, Timestamp, Value, ValueMap};

/// One invocation of a capability: a recorded one, or the pending call being checked
/// (Reading: pending call), which is recorded as it was checked.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The input given.
    pub inputs: Arc<serde_json::Value>,
    /// The output: the pending call's once it has one, a recorded call's unless results
    /// are not collected (OAS-C2).
    pub outputs: Option<Arc<serde_json::Value>>,
    /// When the call started (AGX-T1), as a CEL timestamp; `None` when the clock could
    /// not be read, so that a check reading it denies.
    started_at: Option<Value>,
    /// When the call ended (AGX-T1): set once it has an output (or failed).
    ended_at: Option<Value>,
    /// `inputs` as a CEL value, built on first use; shared by the input and output
    /// stages of one call, so that the interpreter converts an input once.
    inputs_value: OnceLock<Value>,
    /// `{inputs, outputs?}` as a CEL value, built on first use.
    value: OnceLock<Value>,
}

/// The map keys of a call's and of `recent`'s CEL values, made once per process so that
/// building those values clones them rather than allocating them.
pub(crate) struct Keys {
    pub(crate) inputs: MapKey,
    pub(crate) outputs: MapKey,
    pub(crate) name: MapKey,
    pub(crate) started_at: MapKey,
    pub(crate) ended_at: MapKey,
}

pub(crate) static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    inputs: string_key(field::INPUTS),
    outputs: string_key(field::OUTPUTS),
    name: string_key(field::RECENT_NAME),
    started_at: string_key(field::CALL_STARTED_AT),
    ended_at: string_key(field::CALL_ENDED_AT),
});

impl Invocation {
    /// A call with its input only: the pending call at its input restriction, or a
    /// recorded call whose results are not collected.
    pub fn new(inputs: Arc<serde_json::Value>) -> Self {
        Invocation {
            inputs,
            outputs: None,
            started_at: None,
            ended_at: None,
            inputs_value: OnceLock::new(),
            value: OnceLock::new(),
        }
    }

    /// The same call, started at `at` (AGX-T1).
    pub fn started(mut self, at: Option<Timestamp>) -> Self {
        self.started_at = at.map(Value::Timestamp);
        self.value = OnceLock::new();
        self
    }

    /// The same call, ended at `at` (AGX-T1).
    pub fn ended(mut self, at: Option<Timestamp>) -> Self {
        self.ended_at = at.map(Value::Timestamp);
        self.value = OnceLock::new();
        self
    }

    /// When the call started, as a CEL timestamp (AGX-T1).
    pub fn started_at(&self) -> Option<&Value> {
        self.started_at.as_ref()
    }

    /// When the call ended, as a CEL timestamp (AGX-T1).
    pub fn ended_at(&self) -> Option<&Value> {
        self.ended_at.as_ref()
    }

    /// The start and end as timestamps, for snapshots and traces.
    pub fn times(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        let timestamp = |value: &Option<Value>| match value {
            Some(Value::Timestamp(at)) => Some(*at),
            _ => None,
        };
        (timestamp(&self.started_at), timestamp(&self.ended_at))
    }

    /// The same call with its output, sharing the input's CEL value if it was built.
    pub fn with_outputs(&self, outputs: Arc<serde_json::Value>) -> Self {
        Invocation {
            inputs: Arc::clone(&self.inputs),
            outputs: Some(outputs),
            started_at: self.started_at.clone(),
            ended_at: self.ended_at.clone(),
            inputs_value: self.inputs_value.clone(),
            value: OnceLock::new(),
        }
    }

    /// The same call without its output (OAS-C2: recorded without `collect_results`),
    /// keeping the CEL values that do not include the output.
    pub fn without_outputs(self) -> Self {
        let value = if self.outputs.is_none() {
            self.value
        } else {
            OnceLock::new()
        };
        Invocation {
            inputs: self.inputs,
            outputs: None,
            started_at: self.started_at,
            ended_at: self.ended_at,
            inputs_value: self.inputs_value,
            value,
        }
    }

    /// `{inputs, outputs?}` as `recent.<name>` and `history.<name>` show it (OAS-E3),
    /// as a CEL value: built from the JSON on the first call, then kept.
    pub fn cel_value(&self) -> &Value {
        self.value.get_or_init(|| {
            let inputs = self
                .inputs_value
                .get_or_init(|| agentc_cel::value_from_json(&self.inputs));
            let mut map = ValueMap::new();
            map.insert(KEYS.inputs.clone(), inputs.clone());
            if let Some(outputs) = &self.outputs {
                map.insert(KEYS.outputs.clone(), agentc_cel::value_from_json(outputs));
            }
            if let Some(started_at) = &self.started_at {
                map.insert(KEYS.started_at.clone(), started_at.clone());
            }
            if let Some(ended_at) = &self.ended_at {
                map.insert(KEYS.ended_at.clone(), ended_at.clone());
            }
            Value::Map(Arc::new(map))
        })
    }
}

/// A CEL map key for a field name.
pub(crate) fn string_key(text: &str) -> MapKey {
    MapKey::String(Arc::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A call's CEL value is built only when something interprets it, once, and an
    /// output stage shares the input's converted value.
    #[test]
    fn a_calls_cel_value_is_built_on_demand_and_shared_between_stages() {
        let call = Invocation::new(Arc::new(json!({"q": "leave"})));
        assert!(call.value.get().is_none() && call.inputs_value.get().is_none());
        let input_stage = call.cel_value().clone();
        assert_eq!(
            input_stage,
            agentc_cel::value_from_json(&json!({"inputs": {"q": "leave"}}))
        );
        let with_output = call.with_outputs(Arc::new(json!({"n": 1})));
        assert!(with_output.value.get().is_none());
        let Some(Value::String(first)) = call.inputs_value.get().and_then(|v| match v {
            Value::Map(map) => map.get_str("q").cloned(),
            _ => None,
        }) else {
            panic!("the input's value was built")
        };
        let Value::Map(output_stage) = with_output.cel_value() else {
            panic!("a map")
        };
        let Some(Value::Map(shared_inputs)) = output_stage.get_str("inputs") else {
            panic!("inputs")
        };
        let Some(Value::String(second)) = shared_inputs.get_str("q") else {
            panic!("q")
        };
        assert!(Arc::ptr_eq(&first, second), "the input was converted twice");
        assert_eq!(
            with_output.cel_value().clone(),
            agentc_cel::value_from_json(&json!({"inputs": {"q": "leave"}, "outputs": {"n": 1}}))
        );
        // Recorded without its output (OAS-C2), the call shows no `outputs`.
        let recorded = with_output.without_outputs();
        assert_eq!(recorded.cel_value().clone(), input_stage);
    }
}
