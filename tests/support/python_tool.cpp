#include "python_tool.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

namespace sbtest {
namespace fs = std::filesystem;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

std::string test_python() {
  const char* py = std::getenv("SWITCHBOARD_TEST_PYTHON");
  if (!py || !*py)
    FAIL("SWITCHBOARD_TEST_PYTHON is not set: run through scripts/test, or source scripts/lib/python.sh and "
         "run sb_python_tools (it creates the venv with the pinned oracles)");
  return py;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

ToolRun run_python(const std::vector<std::string>& args, const std::string& log_path) {
  std::string cmd = "cd " + shell_quote(repo_root().string()) + " && " + shell_quote(test_python());
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " > " + shell_quote(log_path) + " 2>&1";
  const int status = std::system(cmd.c_str());
  ToolRun r;
  r.exit_code = status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

}  // namespace sbtest
