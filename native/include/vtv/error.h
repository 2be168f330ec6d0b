// The one exception type the engine throws. Every message names the thing at fault
// (a file, a weight key, an argument) so a user can act on it without a debugger.
#pragma once
#include <stdexcept>
#include <string>

namespace vtv {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws vtv::Error(message) when `condition` is false.
inline void check(bool condition, const std::string& message) {
  if (!condition) throw Error(message);
}

}  // namespace vtv
