#include "mesh/rpc/rpc.h"

#include <string>

#include "gtest/gtest.h"

namespace mesh {
namespace rpc {
namespace {

TEST(RpcCodecTest, StatusAndBodyRoundTrip) {
  auto ok = DecodeResponse(EncodeStatusPrefix(absl::StatusCode::kOk) + "body");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "body");
  auto empty = DecodeResponse(EncodeStatusPrefix(absl::StatusCode::kOk));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
  auto err = DecodeResponse(EncodeStatusPrefix(absl::StatusCode::kPermissionDenied) + "why");
  EXPECT_EQ(err.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(err.status().message(), "why");
  EXPECT_EQ(EncodeStatusPrefix(absl::StatusCode::kNotFound), std::string("\x05\0\0\0", 4));  // little-endian
}

TEST(RpcCodecTest, MalformedResponsesAreInternalErrors) {
  for (size_t n = 0; n < kStatusBytes; ++n) {
    auto r = DecodeResponse(std::string(n, '\0'));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
    EXPECT_NE(r.status().message().find("malformed response"), absl::string_view::npos);
  }
  auto bad = DecodeResponse(std::string("\x11\0\0\0", 4));  // 17: past the canonical codes
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(bad.status().message().find("status code 17"), absl::string_view::npos);
  auto huge = DecodeResponse(std::string("\xff\xff\xff\xff", 4));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInternal);
}

// A service's core answers with its handler's result (an error too) while
// open, and NOT_FOUND once closed, without calling the handler.
TEST(ServiceCoreTest, HandlesWhileOpenAndRefusesOnceClosed) {
  int calls = 0;
  bool closed_hook = false;
  ServiceCore core(
      "text/upper", 7,
      [&](const RequestView& r) -> absl::StatusOr<std::string> {
        ++calls;
        if (r.payload.empty()) return absl::InvalidArgumentError("empty");
        return std::string(r.payload) + "!";
      },
      [&] { closed_hook = true; });
  auto ok = core.Handle(RequestView{"text/upper", "caller", "hi"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "hi!");
  EXPECT_EQ(core.Handle(RequestView{"text/upper", "caller", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(core.handled(), 2u);
  core.Close();
  EXPECT_TRUE(closed_hook);
  auto refused = core.Handle(RequestView{"text/upper", "caller", "hi"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(refused.status().message(), "service text/upper is no longer served here");
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(core.handled(), 2u);
}

}  // namespace
}  // namespace rpc
}  // namespace mesh
