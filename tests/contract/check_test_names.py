#!/usr/bin/env python3
"""Every Catch2 TEST_CASE name is one ctest test: catch_discover_tests splits names at ';' (a
CMake list separator), so a name with one becomes several ctest entries that each match no test
case and "pass" in milliseconds while the real test never runs. Fails listing such names."""
import glob
import os
import re
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

bad = []
for path in sorted(glob.glob("tests/**/*.cpp", recursive=True) + glob.glob("bench/*.cpp")):
    text = open(path, encoding="utf-8").read()
    for m in re.finditer(r'TEST_CASE\(((?:\s*"(?:[^"\\]|\\.)*")+)', text):
        name = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        if ";" in name:
            bad.append(f"{path}:{text[:m.start()].count(chr(10)) + 1}: {name}")
if bad:
    print("TEST_CASE names with ';' (ctest would split them and run nothing):", *bad, sep="\n  ")
    sys.exit(1)
print("every TEST_CASE name is free of ';'")
