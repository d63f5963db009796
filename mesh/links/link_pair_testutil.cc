#include "mesh/links/link_pair_testutil.h"

#include <unistd.h>

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "fdpass/socket.h"
#include "ringbuf/ring.h"

namespace mesh {
namespace testing_util {
namespace {

// This process as discovery would announce it.
mesh::v1::Member Self(const LinkParams& p, const std::string& link_socket) {
  mesh::v1::Member m;
  m.set_name(p.name);
  m.set_id(p.id);
  m.set_pid(::getpid());
  m.set_uid(::getuid());
  m.set_link_socket(link_socket);
  m.set_ring_capacity_bytes(p.ring_capacity_bytes);
  return m;
}

}  // namespace

LinkParams TestLinkParams(const std::string& name, uint64_t id, uint64_t ring_bytes, absl::Duration beat) {
  LinkParams p;
  p.name = name;
  p.id = id;
  p.ring_capacity_bytes = ring_bytes;
  p.max_peer_ring_bytes = uint64_t{1} << 30;
  p.allowed_uids = {::getuid()};
  p.wait = ringbuf::WaitOptions::NoSpin();
  p.heartbeat_interval = beat;
  return p;
}

absl::StatusOr<LinkPair> MakeLinkPair(const std::string& dir, const LinkParams& a, const LinkParams& b) {
  const std::string path = absl::StrCat(dir, "/", b.name, ".link");
  absl::StatusOr<base::UniqueFd> listen = fdpass::ListenSeqpacket(path);
  if (!listen.ok()) return listen.status();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  absl::StatusOr<std::shared_ptr<Link>> accepted = absl::UnknownError("not accepted");
  std::thread acceptor([&] {
    absl::StatusOr<base::UniqueFd> conn = fdpass::Accept(listen->get(), deadline);
    if (!conn.ok()) {
      accepted = conn.status();
      return;
    }
    const MemberLookup lookup = [&](const std::string& name, uint64_t id) -> absl::StatusOr<mesh::v1::Member> {
      if (name != a.name || id != a.id) return absl::NotFoundError(absl::StrCat("'", name, "' is unknown here"));
      return Self(a, "");
    };
    accepted = Link::Accept(std::move(*conn), b, lookup, deadline);
  });
  absl::StatusOr<std::shared_ptr<Link>> dialed = Link::Dial(a, Self(b, path), deadline);
  acceptor.join();
  ::unlink(path.c_str());
  if (!dialed.ok()) return dialed.status();
  if (!accepted.ok()) return accepted.status();
  return LinkPair{std::move(*dialed), std::move(*accepted)};
}

}  // namespace testing_util
}  // namespace mesh
