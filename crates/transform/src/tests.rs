use super::*;

fn ctx() -> Context<'static> {
    Context {
        stream: "orders",
        shard_id: "shardId-000000000001",
        partition_key: "pk-7",
        sequence_number: "4960",
        sub_sequence_number: Some(3),
        approximate_arrival_ms: Some(1_700_000_000_000),
        tag: Some("prod"),
        cloudwatch: None,
    }
}

fn run(source: &str, payload: &[u8]) -> Outcome {
    VrlProgram::compile(source)
        .expect("compiles")
        .run(payload, &ctx(), 1 << 20)
}

fn kept(outcome: Outcome) -> String {
    match outcome {
        Outcome::Keep(b) => String::from_utf8(b.to_vec()).expect("utf-8"),
        other => panic!("expected Keep, got {other:?}"),
    }
}

#[test]
fn json_payloads_are_objects_and_come_out_as_json() {
    let out = run(
        ".level = upcase!(.level)\ndel(.secret)",
        br#"{"level":"warn","secret":1,"n":2}"#,
    );
    assert_eq!(kept(out), r#"{"level":"WARN","n":2}"#);
}

#[test]
fn text_payloads_are_strings_and_come_out_as_bytes() {
    assert_eq!(kept(run(r#". = upcase!(.)"#, b"hello")), "HELLO");
    // Reshaped into an object, a text record comes out as JSON.
    assert_eq!(
        kept(run(r#". = {"message": .}"#, b"plain")),
        r#"{"message":"plain"}"#
    );
}

#[test]
fn the_context_is_readable_and_read_only() {
    let out = run(
        r#". = {"k": %kinesis.partition_key, "s": %kinesis.shard_id, "sub": %kinesis.sub_sequence_number, "tag": %tag}"#,
        b"x",
    );
    assert_eq!(
        kept(out),
        r#"{"k":"pk-7","s":"shardId-000000000001","sub":3,"tag":"prod"}"#
    );
    let err = VrlProgram::compile(r#"%tag = "other""#).expect_err("read-only");
    assert!(
        matches!(err, CompileError::Diagnostics(ref m) if m.contains("read-only")),
        "{err}"
    );
}

#[test]
fn cloudwatch_events_carry_their_log_group() {
    let mut c = ctx();
    c.cloudwatch = Some(CloudWatchContext {
        owner: "123456789012",
        log_group: "/aws/lambda/pay",
        log_stream: "s",
        id: "e1",
        timestamp_ms: 5,
    });
    let program = VrlProgram::compile(r#". = %cloudwatch.log_group"#).expect("compiles");
    assert_eq!(kept(program.run(b"m", &c, 100)), "/aws/lambda/pay");
}

#[test]
fn abort_drops_and_errors_fail() {
    assert_eq!(
        run(r#"if .drop == true { abort }"#, br#"{"drop":true}"#),
        Outcome::Dropped
    );
    assert_eq!(
        kept(run(r#"if .drop == true { abort }"#, br#"{"drop":false}"#)),
        r#"{"drop":false}"#
    );
    // A fallible call that fails on this record, and an explicit error: both dead letters.
    let Outcome::Failed(f) = run(r#". = parse_json!(.)"#, b"not json {") else {
        panic!("expected a failure")
    };
    assert_eq!(f.category(), "error");
    assert!(f.to_string().contains("unable to parse json"), "{f}");
    let Outcome::Failed(f) = run(
        r#"assert!(int!(.n) > 1, message: "n too small")"#,
        br#"{"n":0}"#,
    ) else {
        panic!("expected a failure")
    };
    assert!(f.to_string().contains("n too small"), "{f}");
}

#[test]
fn compile_errors_name_the_line_and_too_long_programs_are_refused() {
    let err = VrlProgram::compile(".a = 1\n.b = nosuchfunction(.a)").expect_err("unknown function");
    let CompileError::Diagnostics(text) = err else {
        panic!("diagnostics")
    };
    assert!(
        text.contains("nosuchfunction") && text.contains("2:"),
        "{text}"
    );
    // An unhandled fallible call is an error at compile time, not on every record.
    assert!(VrlProgram::compile(". = parse_json(.)").is_err());
    let long = "#".repeat(MAX_SOURCE_BYTES + 1);
    assert_eq!(
        VrlProgram::compile(&long).expect_err("too long"),
        CompileError::TooLong(MAX_SOURCE_BYTES + 1)
    );
}

#[test]
fn costly_records_and_large_outputs_are_bounded() {
    // Each element is a step: a large array with a map over it runs out of steps.
    let n = 2_000_000usize;
    let payload = format!("[{}0]", "0,".repeat(n));
    let out = run(
        r#". = map_values(array!(.)) -> |v| { v }"#,
        payload.as_bytes(),
    );
    assert_eq!(
        out,
        Outcome::Failed(Failure::TooCostly),
        "a {n}-element map is stopped"
    );
    let program = VrlProgram::compile(r#". = join!([., ., ., .])"#).expect("compiles");
    assert_eq!(
        program.run(b"0123456789", &ctx(), 30),
        Outcome::Failed(Failure::TooLarge {
            size: 40,
            limit: 30
        })
    );
}

#[test]
fn a_condition_is_its_boolean_result_and_anything_else_is_a_failure() {
    let p = |s: &str| VrlProgram::compile(s).expect("compiles");
    let level = p(r#".level == "error""#);
    assert_eq!(level.matches(br#"{"level":"error"}"#, &ctx()), Ok(true));
    assert_eq!(level.matches(br#"{"level":"info"}"#, &ctx()), Ok(false));
    assert_eq!(level.matches(b"not json", &ctx()), Ok(false));
    assert_eq!(p(r#"%tag == "prod""#).matches(b"{}", &ctx()), Ok(true));
    assert_eq!(p("abort").matches(b"{}", &ctx()), Ok(false));
    let not_bool = p(".level").matches(br#"{"level":"x"}"#, &ctx());
    assert!(
        matches!(&not_bool, Err(Failure::Error(m)) if m.contains("true or false")),
        "{not_bool:?}"
    );
    let failing = p(r#"upcase!(.n) == "X""#).matches(br#"{"n":1}"#, &ctx());
    assert!(matches!(failing, Err(Failure::Error(_))), "{failing:?}");
    let payload = format!("[{}0]", "0,".repeat(2_000_000));
    let costly =
        p("length(map_values(array!(.)) -> |v| { v }) > 0").matches(payload.as_bytes(), &ctx());
    assert_eq!(costly, Err(Failure::TooCostly));
}
