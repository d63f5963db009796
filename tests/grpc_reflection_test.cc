// A real meshd answers generic gRPC clients: server reflection lists its
// services and describes mesh.v1.Topology and mesh.v1.Messaging, so tools like grpcurl work
// without the .proto files. Runs meshd as a separate process (this binary
// carries its own client-side reflection messages).
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/proto/reflection_client.grpc.pb.h"

namespace {

using grpc::reflection::v1alpha::ServerReflection;
using grpc::reflection::v1alpha::ServerReflectionRequest;
using grpc::reflection::v1alpha::ServerReflectionResponse;

class GrpcReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/grt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::string config = dir_ + "/a.textproto";
    std::ofstream(config) << "name: \"a\"\nrun_dir: \"" << dir_ << "\"\nlog_level: WARNING\n";
    std::string meshd = absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"), "/mesh/cmd/meshd");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl(meshd.c_str(), meshd.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    ASSERT_GT(pid_, 0);
    channel_ = grpc::CreateChannel(absl::StrCat("unix:", dir_, "/a.grpc"), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)))
        << "meshd did not start serving";
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "meshd exit status " << status;
    }
    std::error_code ec;
    std::filesystem::remove(dir_ + "/a.textproto", ec);  // ours, not meshd's
    EXPECT_TRUE(std::filesystem::is_empty(dir_, ec)) << "meshd left files in " << dir_;
    std::filesystem::remove_all(dir_, ec);
  }

  // One request/response exchange on a reflection stream.
  ServerReflectionResponse Ask(const ServerReflectionRequest& request) {
    auto stub = ServerReflection::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->ServerReflectionInfo(&ctx);
    ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->WritesDone());
    EXPECT_TRUE(stream->Read(&response));
    ServerReflectionResponse extra;
    while (stream->Read(&extra)) {
    }
    grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // The methods of service mesh.v1.<name> as reflection describes it (from
  // the file that holds the symbol); fails the test if it is not described.
  std::set<std::string> DescribeMethods(const std::string& name) {
    ServerReflectionRequest request;
    request.set_file_containing_symbol("mesh.v1." + name);
    ServerReflectionResponse response = Ask(request);
    EXPECT_TRUE(response.has_file_descriptor_response()) << response.DebugString();
    bool found = false;
    std::set<std::string> methods;
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      for (const auto& service : file.service()) {
        if (service.name() != name) continue;
        found = true;
        // Named by its import path below proto/, as a client that generates
        // code from proto/ (or the installed include/shmesh/) names it.
        EXPECT_EQ(file.name(), "mesh/v1/mesh.proto");
        for (const auto& m : service.method()) methods.insert(m.name());
      }
    }
    EXPECT_TRUE(found) << "mesh.v1." << name << " not described: " << response.DebugString();
    return methods;
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(GrpcReflectionTest, ListsTheMeshServices) {
  ServerReflectionRequest request;
  request.set_list_services("*");
  ServerReflectionResponse response = Ask(request);
  ASSERT_TRUE(response.has_list_services_response()) << response.DebugString();
  std::set<std::string> names;
  for (const auto& s : response.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count("mesh.v1.Discovery")) << response.DebugString();
  EXPECT_TRUE(names.count("mesh.v1.Topology")) << response.DebugString();
  EXPECT_TRUE(names.count("mesh.v1.Messaging")) << response.DebugString();
  EXPECT_TRUE(names.count("grpc.health.v1.Health")) << response.DebugString();
}

TEST_F(GrpcReflectionTest, DescribesTheTopologyService) {
  EXPECT_EQ(DescribeMethods("Topology"), (std::set<std::string>{"GetTopology", "WatchTopology"}));
}

TEST_F(GrpcReflectionTest, DescribesTheMessagingService) {
  EXPECT_EQ(DescribeMethods("Messaging"), (std::set<std::string>{"Send"}));
}

}  // namespace
