//! The tool list, schemas, annotations, server identity and the read-only switch.

use serde_json::{Value, json};

use crate::support::*;

const READ_TOOLS: [&str; 10] = [
    "crm_stats",
    "find_organizations",
    "find_people",
    "get_deal",
    "get_interaction",
    "get_organization",
    "get_person",
    "list_interactions",
    "list_merge_candidates",
    "search",
];
const WRITE_TOOLS: [&str; 5] = [
    "add_note",
    "review_merge_candidate",
    "undo_merge",
    "update_organization",
    "update_person",
];

#[tokio::test]
async fn lists_every_tool_with_typed_schemas_and_annotations() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "schema-check").await;

    let info = client.peer_info().expect("server info");
    let info = serde_json::to_value(&*info).unwrap();
    let server = &info["serverInfo"];
    assert_eq!(server["name"], "crm-substrate", "{info}");
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    let instructions = info["instructions"].as_str().unwrap();
    assert!(instructions.contains("untrusted data"), "{instructions}");

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    let mut want: Vec<&str> = READ_TOOLS
        .iter()
        .chain(WRITE_TOOLS.iter())
        .copied()
        .collect();
    want.sort();
    assert_eq!(names, want);

    for tool in &tools {
        let name = tool.name.to_string();
        let value = serde_json::to_value(tool).unwrap();
        let mut uints = Vec::new();
        uint_formats(&value, &name, &mut uints);
        assert!(uints.is_empty(), "usize-style formats in {uints:?}");

        let description = tool.description.as_deref().unwrap_or("");
        assert!(description.len() > 40, "{name} has a thin description");
        let input = &value["inputSchema"];
        assert_eq!(input["type"], "object", "{name}");
        if let Some(props) = input["properties"].as_object() {
            for (field, schema) in props {
                assert!(
                    schema["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{name}.{field} has no description: {schema}"
                );
            }
        }
        assert_eq!(
            value["outputSchema"]["type"], "object",
            "{name} has no structured output schema"
        );
        let a = &value["annotations"];
        let read_only = READ_TOOLS.contains(&name.as_str());
        assert_eq!(a["readOnlyHint"], json!(read_only), "{name}: {a}");
        assert_eq!(a["openWorldHint"], json!(false), "{name}: {a}");
        assert!(a["destructiveHint"].is_boolean(), "{name}: {a}");
        assert!(a["idempotentHint"].is_boolean(), "{name}: {a}");
        assert!(a["title"].is_string(), "{name}: {a}");
    }

    let update = tools.iter().find(|t| t.name == "update_person").unwrap();
    let props = update.input_schema.get("properties").unwrap();
    let fields: Vec<&String> = props.as_object().unwrap().keys().collect();
    for forbidden in [
        "full_name",
        "created_at",
        "updated_at",
        "deleted_at",
        "organization_id",
    ] {
        assert!(
            !fields.iter().any(|f| *f == forbidden),
            "{forbidden} is writable"
        );
    }
    assert_eq!(
        update.input_schema.get("additionalProperties"),
        Some(&Value::Bool(false))
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn read_only_mode_removes_the_write_tools() {
    let crm = Crm::build();
    let client = stdio(&crm, &["--read-only"], "read-only-check").await;
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, READ_TOOLS);
    let info = serde_json::to_value(&*client.peer_info().unwrap()).unwrap();
    assert!(info["instructions"].as_str().unwrap().contains("read-only"));

    // A write tool called anyway is unknown, and nothing is written.
    let result = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("add_note").with_arguments(
                json!({"body": "x", "person_ids": [ADA]})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await;
    match result {
        Err(_) => {}
        Ok(r) => assert_eq!(r.is_error, Some(true), "{}", text_of(&r)),
    }
    assert!(write_log(&crm).is_empty());
    // Reads still work.
    let person = ok(&client, "get_person", json!({"id": ADA})).await;
    assert_eq!(person["person"]["full_name"], "Ada Lovelace");
    client.cancel().await.unwrap();
}
