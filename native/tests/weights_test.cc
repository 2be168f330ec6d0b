// The safetensors reader: values, zero-copy, widening, and every validation error with its message.
#include "vtv/weights.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/json.h"
#include "expect_error.h"
#include "test_weights.h"
#include "vtv/error.h"

namespace vtv {
namespace {

using test::SafetensorsWriter;
using test::TempFile;
using test::expect_error;

std::vector<float> iota_floats(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * (float(i) - float(n) / 3.0f);
  return v;
}

TEST(Json, ParsesValuesEscapesAndExactIntegers) {
  auto v = json::parse(R"( {"a": [1, -2, 3.5e1, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00",
                            "big": 9007199254740993, "o": {}} )",
                       "t");
  ASSERT_TRUE(v.is_object());
  const auto* a = v.find("a");
  ASSERT_TRUE(a && a->is_array());
  ASSERT_EQ(a->items().size(), 6u);
  EXPECT_EQ(a->items()[0].as_int(), 1);
  EXPECT_EQ(a->items()[1].as_int(), -2);
  EXPECT_FALSE(a->items()[2].is_int());
  EXPECT_DOUBLE_EQ(a->items()[2].as_number(), 35.0);
  EXPECT_TRUE(a->items()[3].as_bool());
  EXPECT_FALSE(a->items()[4].as_bool());
  EXPECT_TRUE(a->items()[5].is_null());
  EXPECT_EQ(v.find("s")->as_string(), "x\"\\/\n\xC3\xA9\xF0\x9F\x98\x80");
  EXPECT_EQ(v.find("big")->as_int(), 9007199254740993LL);  // not representable as a double
  EXPECT_TRUE(v.find("o")->is_object());
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, ErrorsNameTheByteOffset) {
  expect_error([] { json::parse("{\"a\": [1, 2,]}", "hdr"); }, {"hdr: invalid JSON at byte 12"});
  expect_error([] { json::parse("{\"a\": 1} x", "hdr"); }, {"byte 9", "after the end"});
  expect_error([] { json::parse("{\"a\": \"unterminated", "hdr"); }, {"unterminated string"});
  expect_error([] { json::parse("{\"a\": tru}", "hdr"); }, {"invalid literal"});
  expect_error([] { json::parse(std::string(100, '['), "hdr"); }, {"nesting deeper"});
  expect_error([] { json::parse("", "hdr"); }, {"byte 0"});
}

TEST(Json, QuoteRoundTrips) {
  const std::string s = "a\"b\\c\nd\x01";
  EXPECT_EQ(json::parse(json::quote(s), "q").as_string(), s);
}

TEST(Weights, F32IsServedZeroCopyWithShapeAndMetadata) {
  TempFile f("f32");
  SafetensorsWriter w;
  auto a = iota_floats(6, 0.5f), b = iota_floats(4, -1.25f);
  w.add_f32("a", {2, 3}, a);
  w.add_f32("b.bias", {4}, b);
  w.set_metadata("vtv_config", "tiny");
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  EXPECT_TRUE(weights->has("a"));
  EXPECT_FALSE(weights->has("c"));
  EXPECT_EQ(weights->keys(), (std::vector<std::string>{"a", "b.bias"}));
  EXPECT_EQ(weights->metadata("vtv_config"), "tiny");
  EXPECT_EQ(weights->metadata("absent"), "");
  const TensorInfo& info = weights->info("a");
  EXPECT_EQ(info.dtype, DType::F32);
  EXPECT_EQ(info.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(info.nbytes, 24u);
  const float* pa = weights->f32("a", {2, 3});
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(pa), info.data);  // zero-copy: a pointer into the mapping
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(pa[i], a[i]);
  const float* pb = weights->f32("b.bias", {4});
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(pb[i], b[i]);
  EXPECT_GE(weights->total_bytes(), 40u);
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
}

TEST(Weights, MisalignedF32IsCopiedWithTheSameValues) {
  TempFile f("misaligned");
  SafetensorsWriter w;
  w.set_data_misalignment(2);
  auto a = iota_floats(5, 0.1f);
  w.add_f32("a", {5}, a);
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  const float* p = weights->f32("a", {5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(float), 0u);
  EXPECT_NE(reinterpret_cast<const uint8_t*>(p), weights->info("a").data);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(p[i], a[i]);
}

TEST(Weights, Bf16AndF16AreWidenedOnceWithExactValues) {
  TempFile f("half");
  SafetensorsWriter w;
  // Values exactly representable in both formats, plus an f16 subnormal (2^-24 * 3) and bf16 rounding.
  std::vector<float> exact = {1.5f, -2.25f, 0.0f, 1024.0f, -0.0078125f, 3.0f * std::ldexp(1.0f, -24)};
  w.add_f16("h", {6}, exact);
  std::vector<float> bf = {1.5f, -2.25f, 0.0f, 1024.0f, -0.0078125f, 1.00390625f /* rounds to 1.0 in bf16 */};
  w.add_bf16("b", {2, 3}, bf);
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  EXPECT_EQ(weights->info("h").dtype, DType::F16);
  EXPECT_EQ(weights->info("b").dtype, DType::BF16);
  const float* h = weights->f32("h", {6});
  for (size_t i = 0; i < exact.size(); ++i) EXPECT_EQ(h[i], exact[i]) << i;
  const float* b = weights->f32("b", {2, 3});
  std::vector<float> want = {1.5f, -2.25f, 0.0f, 1024.0f, -0.0078125f, 1.0f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(b[i], want[i]) << i;
  EXPECT_EQ(weights->f32("b", {2, 3}), b);  // cached: the same buffer on the second call
}

TEST(Weights, IntegerTensorsAreListedButNotReadAsFloat) {
  TempFile f("int");
  SafetensorsWriter w;
  w.add_raw("n", "I64", {1}, std::vector<uint8_t>(8, 0));
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  EXPECT_EQ(weights->info("n").dtype, DType::I64);
  expect_error([&] { weights->f32("n", {1}); }, {"key n", "I64"});
}

TEST(Weights, WrongShapeAndMissingKeyErrorsNameTheKey) {
  TempFile f("shape");
  SafetensorsWriter w;
  w.add_f32("blocks.0.attn.qkv.weight", {6, 2}, iota_floats(12, 1.0f));
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  expect_error([&] { weights->f32("blocks.0.attn.qkv.weight", {6, 3}); },
               {"key blocks.0.attn.qkv.weight: expected shape [6,3], file has [6,2]"});
  expect_error([&] { weights->info("blocks.1.attn.qkv.weight"); }, {"'blocks.1.attn.qkv.weight'", "vtv_shape_"});
}

TEST(Weights, TruncatedFileNamesTensorAndRange) {
  TempFile f("trunc");
  SafetensorsWriter w;
  w.add_f32("a", {4}, iota_floats(4, 1.0f));
  w.add_f32("blocks.3.attn.qkv.weight", {8}, iota_floats(8, 1.0f));
  auto bytes = w.bytes();
  bytes.resize(bytes.size() - 5);
  SafetensorsWriter::write_bytes(f.path(), bytes);
  const size_t data_start = bytes.size() + 5 - 48;
  expect_error([&] { Weights::open({f.path()}); },
               {"vtv_trunc_", "tensor 'blocks.3.attn.qkv.weight' data [" + std::to_string(data_start + 16) + "," +
                                  std::to_string(data_start + 48) + ") runs past end of file (size " +
                                  std::to_string(bytes.size()) + ")",
                "truncated?"});
}

TEST(Weights, HeaderErrors) {
  TempFile f("hdr");
  // Shorter than the length field.
  SafetensorsWriter::write_bytes(f.path(), {1, 2, 3});
  expect_error([&] { Weights::open({f.path()}); }, {"vtv_hdr_", "shorter than the 8-byte"});
  // Header length past the end.
  SafetensorsWriter::write_bytes(f.path(), {0xFF, 0, 0, 0, 0, 0, 0, 0, '{', '}'});
  expect_error([&] { Weights::open({f.path()}); }, {"header length 255", "runs past end of file (size 10)"});
  // Malformed JSON.
  std::string bad = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1] \"data_offsets\": [0, 4]}}";
  std::vector<uint8_t> b(8);
  b[0] = static_cast<uint8_t>(bad.size());
  b.insert(b.end(), bad.begin(), bad.end());
  b.resize(b.size() + 4);
  SafetensorsWriter::write_bytes(f.path(), b);
  expect_error([&] { Weights::open({f.path()}); }, {"vtv_hdr_", "invalid JSON at byte " + std::to_string(bad.find("\"data_offsets\"")), "expected ',' or '}'"});
  // Not an object.
  std::string arr = "[1]";
  std::vector<uint8_t> c(8);
  c[0] = 3;
  c.insert(c.end(), arr.begin(), arr.end());
  SafetensorsWriter::write_bytes(f.path(), c);
  expect_error([&] { Weights::open({f.path()}); }, {"header is a JSON array"});
}

TEST(Weights, EntryErrors) {
  TempFile f("entry");
  {
    SafetensorsWriter w;
    w.add_raw("x", "F32", {3}, std::vector<uint8_t>(8));  // 8 bytes for 3 floats
    w.write(f.path());
    expect_error([&] { Weights::open({f.path()}); }, {"tensor 'x'", "span 8 bytes", "[3] x F32 needs 12"});
  }
  {
    SafetensorsWriter w;
    w.add_raw("y", "F64", {1}, std::vector<uint8_t>(8));
    w.write(f.path());
    expect_error([&] { Weights::open({f.path()}); }, {"tensor 'y'", "unsupported dtype 'F64'"});
  }
  {
    SafetensorsWriter w;
    w.add_raw("z", "F32", {-1}, std::vector<uint8_t>(4));
    w.write(f.path());
    expect_error([&] { Weights::open({f.path()}); }, {"tensor 'z'", "non-negative integers"});
  }
  {
    SafetensorsWriter w;
    w.set_metadata("k", "v");
    w.write(f.path());
    auto ok = Weights::open({f.path()});  // metadata only, no tensors: valid
    EXPECT_TRUE(ok->keys().empty());
  }
}

TEST(Weights, SeveralFilesAndVqKeyResolution) {
  TempFile a("multi_a"), b("multi_b");
  {
    SafetensorsWriter w;
    w.add_f32("cls_token", {1}, {1.0f});
    w.add_f32("vae.decoder.conv_in.bias", {1}, {2.0f});
    w.write(a.path());
  }
  {
    SafetensorsWriter w;
    w.add_f32("quantize.embedding.weight", {1, 1}, {3.0f});
    w.write(b.path());
  }
  auto weights = Weights::open({a.path(), b.path()});
  EXPECT_EQ(weights->files().size(), 2u);
  EXPECT_EQ(weights->vq_key("decoder.conv_in.bias"), "vae.decoder.conv_in.bias");
  EXPECT_EQ(weights->vq_key("quantize.embedding.weight"), "quantize.embedding.weight");
  EXPECT_EQ(weights->f32(weights->vq_key("quantize.embedding.weight"), {1, 1})[0], 3.0f);
  EXPECT_EQ(weights->info("quantize.embedding.weight").file, 1);
  expect_error([&] { weights->info("nope"); }, {"'nope'", "vtv_multi_a_", "vtv_multi_b_"});
  // The same key in two files is ambiguous.
  expect_error([&] { Weights::open({a.path(), a.path()}); }, {"duplicate key", "cls_token"});
  expect_error([&] { Weights::open({"/nonexistent/w.safetensors"}); }, {"/nonexistent/w.safetensors", "cannot open"});
}


TEST(Weights, NonFiniteValuesAreRefusedNamingTheTensor) {
  const float nan = std::nanf(""), inf = INFINITY;
  struct Case {
    const char* dtype;
    float bad;
  } cases[] = {{"F32", nan}, {"F32", -inf}, {"F16", inf}, {"BF16", nan}};
  for (const auto& c : cases) {
    TempFile f("nonfinite");
    SafetensorsWriter w;
    w.add_f32("fine", {3}, {1.0f, 2.0f, 3.0f});
    std::vector<float> v(37, 0.5f);
    v[21] = c.bad;
    const std::string dt = c.dtype;
    if (dt == "F32") w.add_f32("blocks.0.norm1.weight", {37}, v);
    if (dt == "F16") w.add_f16("blocks.0.norm1.weight", {37}, v);
    if (dt == "BF16") w.add_bf16("blocks.0.norm1.weight", {37}, v);
    w.write(f.path());
    expect_error([&] { Weights::open({f.path()}); },
                 {"tensor 'blocks.0.norm1.weight'", "1 non-finite value(s)", "of 37", "element 21"});
  }
  // The largest finite values of each format are fine.
  TempFile f("finite");
  SafetensorsWriter w;
  w.add_f32("big", {2}, {3.4028235e38f, -3.4028235e38f});
  w.add_f16("h", {1}, {65504.0f});
  w.write(f.path());
  EXPECT_NO_THROW(Weights::open({f.path()}));
}

TEST(Weights, AFileOverwrittenAfterOpenDoesNotChangeTheWeights) {
  TempFile f("overwrite");
  SafetensorsWriter w;
  w.add_f32("a", {4}, {1.0f, 2.0f, 3.0f, 4.0f});
  w.write(f.path());
  auto weights = Weights::open({f.path()});
  {  // truncate in place, as `cp other.safetensors` over it would: a mapping would fault on the next read
    FILE* out = std::fopen(f.path().c_str(), "wb");
    ASSERT_NE(out, nullptr);
    std::fclose(out);
  }
  const float* p = weights->f32("a", {4});
  EXPECT_EQ(p[3], 4.0f);
}

}  // namespace
}  // namespace vtv
