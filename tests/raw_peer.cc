#include "tests/raw_peer.h"

#include <unistd.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/wait.h"

namespace shmesh {
namespace testing {

absl::StatusOr<std::shared_ptr<mesh::Link>> DialAsRawPeer(mesh::Node* node, const std::string& dir,
                                                          const std::string& name, uint64_t id, uint64_t ring_bytes) {
  auto stub =
      mesh::v1::Discovery::NewStub(grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  mesh::v1::JoinRequest req;
  mesh::v1::Member* m = req.mutable_member();
  m->set_name(name);
  m->set_id(id);
  m->set_pid(::getpid());
  m->set_uid(::getuid());
  m->set_grpc_address(absl::StrCat("unix:", dir, "/", name, ".grpc"));  // nobody serves it
  m->set_link_socket(absl::StrCat(dir, "/", name, ".link"));
  m->set_state(mesh::v1::UP);
  m->set_ring_capacity_bytes(ring_bytes);
  mesh::v1::JoinResponse resp;
  const grpc::Status st = stub->Join(&ctx, req, &resp);
  if (!st.ok()) return absl::UnavailableError(absl::StrCat("Join: ", st.error_message()));
  const mesh::v1::Member* target = nullptr;
  for (const auto& member : resp.members()) {
    if (member.name() == node->name()) target = &member;
  }
  if (target == nullptr) return absl::NotFoundError("the node did not list itself");
  mesh::LinkParams self;
  self.name = name;
  self.id = id;
  self.ring_capacity_bytes = ring_bytes;
  self.max_peer_ring_bytes = uint64_t{1} << 24;
  self.allowed_uids = {::getuid()};
  self.wait = ringbuf::WaitOptions::NoSpin();
  self.heartbeat_interval = absl::Milliseconds(100);
  return mesh::Link::Dial(self, *target, absl::Now() + absl::Seconds(10));
}

std::function<void(const mesh::PeerInfo&)> PeerDowns::Handler() {
  return [this](const mesh::PeerInfo& p) {
    absl::MutexLock lock(&mu_);
    downs_.push_back(p.name);
  };
}

void PeerDowns::Clear() {
  absl::MutexLock lock(&mu_);
  downs_.clear();
}

void PeerDowns::ExpectLinkFails(mesh::Node* node, const std::string& peer, const std::string& what) {
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(2))) {
    absl::MutexLock lock(&mu_);
    if (!downs_.empty()) break;
  }
  {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(downs_, std::vector<std::string>{peer}) << what << ": no peer-down at the node";
  }
  EXPECT_TRUE(node->Peers().empty()) << what << ": the node kept the link";
  // And it goes on running.
  EXPECT_TRUE(node->Topology(true).ok()) << what;
}

}  // namespace testing
}  // namespace shmesh
