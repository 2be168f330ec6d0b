// A small JSON reader for safetensors headers (and anything else small and trusted-shaped). It keeps
// integers exact (int64) because tensor byte offsets can exceed 2^53 in principle and must not be
// rounded through a double. Parse errors name the byte offset and what was expected.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vtv::json {

class Value {
 public:
  enum class Kind { Null, Bool, Int, Number, String, Array, Object };

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }  // an integer literal that fits int64
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_number() const { return kind_ == Kind::Int ? static_cast<double>(i_) : d_; }
  const std::string& as_string() const { return s_; }
  const std::vector<Value>& items() const { return items_; }  // array elements
  // Object members in file order (duplicates kept; find() returns the first).
  const std::vector<std::pair<std::string, Value>>& members() const { return members_; }
  const Value* find(const std::string& key) const;

  // Name of the kind, for error messages ("object", "string", ...).
  static const char* kind_name(Kind k);

  static Value make_null() { return Value(); }
  static Value make_bool(bool b);
  static Value make_int(int64_t i);
  static Value make_number(double d);
  static Value make_string(std::string s);
  static Value make_array(std::vector<Value> items);
  static Value make_object(std::vector<std::pair<std::string, Value>> members);

 private:
  Kind kind_ = Kind::Null;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::vector<Value> items_;
  std::vector<std::pair<std::string, Value>> members_;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else after it). Throws vtv::Error
// "<context>: invalid JSON at byte N: <what>" where N is the offset within `text`.
Value parse(const std::string& text, const std::string& context);

// Writes `s` as a JSON string literal (with quotes), escaping as needed.
std::string quote(const std::string& s);

}  // namespace vtv::json
