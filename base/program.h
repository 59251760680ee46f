// base/program.h
// The start of every moe-serve program: its usage text and command line. With Debian's Abseil,
// `--help` lists only flags defined in a file named after the program (moe-router ≠
// router_main.cc), so it printed "No flags matched"; here `--help` lists every flag defined
// outside Abseil itself — the program's own — with help text and defaults, after the usage text
// (which should end in an example). Called first in main (after any re-exec); not thread-safe.
#pragma once

#include <vector>

#include "absl/strings/string_view.h"

namespace moe::base {

// Sets the usage message and Abseil's usage config, parses argv (exits on --help or a bad flag),
// and returns the positional arguments (argv[0] first), as absl::ParseCommandLine does. Turns
// Abseil's Mutex deadlock detection off (programs only; tests keep it).
std::vector<char*> InitProgram(int argc, char** argv, absl::string_view usage);

// Whether `--help` lists a flag defined in `file`: every file but Abseil's own.
bool IsProgramFlagFile(absl::string_view file);

}  // namespace moe::base
