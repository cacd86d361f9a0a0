//! Conversion of the JSON-schema definitions into OpenAPI 3.0
//! `components.schemas` and Swagger 2.0 `definitions`.

use serde_json::{Value, json};

use super::definitions::{DEFS_REF_PREFIX, rewrite_refs};

/// Which document a schema is converted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// OpenAPI 3.0: references `#/components/schemas/NAME`.
    V3,
    /// Swagger 2.0: references `#/definitions/NAME`.
    V2,
}

impl Flavor {
    pub(crate) fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V3 => "#/components/schemas/",
            Flavor::V2 => "#/definitions/",
        }
    }

    /// A `$ref` to the named definition.
    pub(crate) fn reference(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{name}", self.ref_prefix()) })
    }
}

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Converts one definition:
///
/// - `$ref`s are rewritten to the flavor's prefix;
/// - nullable types `["T", "null"]` become `T` (the upstream documents have
///   no nulls);
/// - IntOrString and Quantity, written as `oneOf` in the source, become
///   `type: string` (`format: int-or-string` for IntOrString), as upstream
///   publishes them;
/// - the `enum` the source adds to `apiVersion` and `kind` of top-level
///   kinds is dropped (upstream has none).
pub(crate) fn convert_definition(name: &str, schema: &Value, flavor: Flavor) -> Value {
    match name {
        INT_OR_STRING => {
            return json!({
                "description": "IntOrString is a type that can hold an int32 or a string. When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type. This allows you to have, for example, a JSON field that can accept a name or number.",
                "type": "string",
                "format": "int-or-string",
            });
        }
        QUANTITY => {
            return json!({
                "description": "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\nThe serialization format is:\n\n<quantity> ::= <signedNumber><suffix>\n\n(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)",
                "type": "string",
            });
        }
        _ => {}
    }
    let mut out = schema.clone();
    rewrite_refs(&mut out, DEFS_REF_PREFIX, flavor.ref_prefix());
    collapse_nullable_types(&mut out);
    if out.get("x-kubernetes-group-version-kind").is_some()
        && let Some(props) = out.get_mut("properties").and_then(Value::as_object_mut)
    {
        for field in ["apiVersion", "kind"] {
            if let Some(p) = props.get_mut(field).and_then(Value::as_object_mut) {
                p.remove("enum");
            }
        }
    }
    out
}

/// Replaces every `"type": ["T", "null"]` by `"type": "T"`. A property
/// *named* `type` holds an object, so only arrays of strings are touched.
fn collapse_nullable_types(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "type"
                    && let Value::Array(types) = v
                    && types.iter().all(Value::is_string)
                {
                    let non_null: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if let [only] = non_null.as_slice() {
                        *v = (*only).clone();
                        continue;
                    }
                }
                collapse_nullable_types(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(collapse_nullable_types),
        _ => {}
    }
}
