#include "runner/host_network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace fs = std::filesystem;

namespace flick::runner {

namespace {

constexpr uint32_t kPoolBase = 0xac130000;  // 172.19.0.0
constexpr uint32_t kSubnets = 1u << 14;     // /30s in a /16
constexpr int kPrefix = 30;

std::string dotted(uint32_t addr) {
  in_addr a{htonl(addr)};
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

// One rtnetlink request, answered by an ack.
class Netlink {
 public:
  Result<void> open() {
    fd_.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!fd_) return sys_error("opening an rtnetlink socket", errno);
    return {};
  }

  Result<void> request(std::vector<uint8_t> msg, const std::string& what) {
    auto* h = reinterpret_cast<nlmsghdr*>(msg.data());
    h->nlmsg_len = static_cast<uint32_t>(msg.size());
    h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd_.get(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
      return sys_error(what, errno);
    alignas(nlmsghdr) uint8_t buf[4096];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) return sys_error(what, errno);
    auto* r = reinterpret_cast<nlmsghdr*>(buf);
    if (!NLMSG_OK(r, static_cast<uint32_t>(n)) || r->nlmsg_type != NLMSG_ERROR)
      return make_error(Errc::io, what + ": unexpected rtnetlink reply");
    int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
    if (err != 0 && err != EEXIST) return sys_error(what, err);
    return {};
  }

 private:
  UniqueFd fd_;
  uint32_t seq_ = 0;
};

template <class T>
void append(std::vector<uint8_t>& msg, const T& value) {
  auto* p = reinterpret_cast<const uint8_t*>(&value);
  msg.insert(msg.end(), p, p + sizeof value);
  msg.resize(NLMSG_ALIGN(msg.size()));
}

void append_attr(std::vector<uint8_t>& msg, uint16_t type, const void* data, size_t len) {
  rtattr a{static_cast<unsigned short>(RTA_LENGTH(len)), type};
  auto* p = reinterpret_cast<const uint8_t*>(&a);
  msg.insert(msg.end(), p, p + sizeof a);
  auto* d = static_cast<const uint8_t*>(data);
  msg.insert(msg.end(), d, d + len);
  msg.resize(NLMSG_ALIGN(msg.size()));
}

}  // namespace

bool can_create_taps() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  bool admin = data[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32));
  return admin && ::access("/dev/net/tun", R_OK | W_OK) == 0;
}


MachineNetwork subnet_addresses(uint32_t index, const std::string& tap) {
  uint32_t base = kPoolBase + 4 * (index % kSubnets);
  return MachineNetwork{tap, dotted(base + 1), dotted(base + 2), kPrefix};
}

Result<void> configure_tap(const MachineNetwork& net) {
  unsigned ifindex = ::if_nametoindex(net.tap.c_str());
  if (ifindex == 0) return sys_error("finding TAP " + net.tap, errno);
  in_addr host{};
  if (::inet_pton(AF_INET, net.host_address.c_str(), &host) != 1)
    return make_error(Errc::invalid_argument, "host address " + net.host_address);
  Netlink nl;
  FLICK_TRY(nl.open());

  std::vector<uint8_t> addr(NLMSG_ALIGN(sizeof(nlmsghdr)));
  reinterpret_cast<nlmsghdr*>(addr.data())->nlmsg_type = RTM_NEWADDR;
  reinterpret_cast<nlmsghdr*>(addr.data())->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(net.prefix);
  ifa.ifa_index = ifindex;
  append(addr, ifa);
  append_attr(addr, IFA_LOCAL, &host, sizeof host);
  append_attr(addr, IFA_ADDRESS, &host, sizeof host);
  FLICK_TRY(nl.request(std::move(addr), "adding " + net.host_address + " to " + net.tap));

  std::vector<uint8_t> link(NLMSG_ALIGN(sizeof(nlmsghdr)));
  reinterpret_cast<nlmsghdr*>(link.data())->nlmsg_type = RTM_NEWLINK;
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = static_cast<int>(ifindex);
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  append(link, ifi);
  return nl.request(std::move(link), "bringing " + net.tap + " up");
}

}  // namespace flick::runner
