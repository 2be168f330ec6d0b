// The check every "bad request fails with a clear message" test makes: the call throws a vtv::Error
// whose message names each of the expected parts.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vtv/error.h"

namespace vtv::test {

// Runs f, expecting a vtv::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F f, std::vector<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << parts[0] << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

}  // namespace vtv::test
