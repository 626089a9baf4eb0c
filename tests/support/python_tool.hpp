#pragma once
// Runs the Python tools tests use as independent oracles (schemathesis, jsonschema, the example
// producer…) with the project venv's interpreter (SWITCHBOARD_TEST_PYTHON, exported by
// scripts/lib/python.sh's sb_python_tools, which scripts/test runs).
#include <filesystem>
#include <string>
#include <vector>

namespace sbtest {

// The repository root (found from this file's path, absolute in CMake builds).
std::filesystem::path repo_root();

// The venv's python; FAILs the test (with how to set it up) when SWITCHBOARD_TEST_PYTHON is unset.
std::string test_python();

struct ToolRun {
  int exit_code = -1;
  std::string output;  // stdout + stderr (also written to the log file)
};

// The event types each live test must produce for validate_events.py (--types=…); together they
// name every type of schemas/events/event.json (checked by a test).
inline constexpr const char* kPipelineEventTypes = "message.sent,message.failed,webhook.endpoint.disabled";
inline constexpr const char* kSessionEventTypes =
    "session.status,session.qr,session.deleted,message.delivered,message.read,message.received";

// `s` quoted for /bin/sh (single quotes; an embedded ' closed, escaped and reopened).
std::string shell_quote(const std::string& s);

// Runs `python args...` from the repository root, output to log_path; waits for it to exit.
ToolRun run_python(const std::vector<std::string>& args, const std::string& log_path);

}  // namespace sbtest
