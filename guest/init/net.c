#include "init.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

struct request {
    struct nlmsghdr nh;
    union {
        struct ifinfomsg link;
        struct ifaddrmsg addr;
        struct rtmsg route;
    };
    char attrs[256];
};

static void add_attr(struct request *r, unsigned short type, const void *data, size_t len) {
    struct rtattr *a = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends one request and waits for its acknowledgement; returns 0 or -errno. */
static int talk(int fd, struct request *r) {
    static unsigned seq;
    r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    r->nh.nlmsg_seq = ++seq;
    if (send(fd, r, r->nh.nlmsg_len, 0) < 0) return -errno;
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) return -errno;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
            return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
        }
    }
}

static int link_up(int fd, int index, int mtu) {
    struct request r = {0};
    r.nh.nlmsg_len = NLMSG_LENGTH(sizeof r.link);
    r.nh.nlmsg_type = RTM_NEWLINK;
    r.link.ifi_family = AF_UNSPEC;
    r.link.ifi_index = index;
    r.link.ifi_flags = IFF_UP;
    r.link.ifi_change = IFF_UP;
    if (mtu > 0) add_attr(&r, IFLA_MTU, &mtu, sizeof mtu);
    return talk(fd, &r);
}

static int add_address(int fd, int index, uint32_t addr, int prefix_len) {
    struct request r = {0};
    r.nh.nlmsg_len = NLMSG_LENGTH(sizeof r.addr);
    r.nh.nlmsg_type = RTM_NEWADDR;
    r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    r.addr.ifa_family = AF_INET;
    r.addr.ifa_prefixlen = (unsigned char)prefix_len;
    r.addr.ifa_index = (unsigned)index;
    add_attr(&r, IFA_LOCAL, &addr, sizeof addr);
    add_attr(&r, IFA_ADDRESS, &addr, sizeof addr);
    return talk(fd, &r);
}

static int add_default_route(int fd, int index, uint32_t gateway) {
    struct request r = {0};
    r.nh.nlmsg_len = NLMSG_LENGTH(sizeof r.route);
    r.nh.nlmsg_type = RTM_NEWROUTE;
    r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
    r.route.rtm_family = AF_INET;
    r.route.rtm_table = RT_TABLE_MAIN;
    r.route.rtm_protocol = RTPROT_BOOT;
    r.route.rtm_scope = RT_SCOPE_UNIVERSE;
    r.route.rtm_type = RTN_UNICAST;
    add_attr(&r, RTA_GATEWAY, &gateway, sizeof gateway);
    add_attr(&r, RTA_OIF, &index, sizeof index);
    return talk(fd, &r);
}

int net_configure(const struct init_config *c, char *err, size_t err_len) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        snprintf(err, err_len, "open rtnetlink: %s", strerror(errno));
        return -1;
    }
    int rc = link_up(fd, (int)if_nametoindex("lo"), 0);
    if (rc) say("bring lo up: %s", strerror(-rc));
    if (!c->has_network) {
        close(fd);
        return 0;
    }
    /* The driver probes the device while its module loads, but allow for a late one. */
    unsigned index = 0;
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 300 && !(index = if_nametoindex(c->ifname)); i++) nanosleep(&tick, NULL);
    const char *step = "find";
    if (!index) rc = -ENODEV;
    else if ((step = "bring up", rc = link_up(fd, (int)index, c->mtu)) == 0 &&
             (step = "address", rc = add_address(fd, (int)index, c->address, c->prefix_len)) == 0 &&
             c->has_gateway)
        step = "default route on", rc = add_default_route(fd, (int)index, c->gateway);
    close(fd);
    if (rc) {
        snprintf(err, err_len, "network: %s %s: %s", step, c->ifname, strerror(-rc));
        return -1;
    }
    return 0;
}
