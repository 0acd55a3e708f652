/*
 * test_ldap_unit.c - the pure parts of source_ldap.c: which attribute values
 * are addresses (and where they start), and which attribute descriptions are
 * a cut AD range. The .c is compiled in to reach its static helpers.
 */
#include "../../src/backstopctl/source_ldap.c"

#include "check.h"

static const struct {
    const char *value;
    int emit;        /* 1 = an address */
    const char *out; /* what is emitted */
} values[] = {
    {"alice@corp.example", 1, "alice@corp.example"},      /* mail: no type */
    {"SMTP:Alice@Corp.Example", 1, "Alice@Corp.Example"}, /* primary */
    {"smtp:alias@corp.example", 1, "alias@corp.example"}, /* secondary */
    {"Smtp:x@corp.example", 1, "x@corp.example"},         /* any case */
    {"smtp:@corp.example", 1, "@corp.example"},           /* catch-all */
    {"@corp.example", 1, "@corp.example"},                /* catch-all, no type */
    {"X500:/o=Corp/ou=Exchange/cn=Recipients/cn=alice", 0, NULL},
    {"SIP:alice@corp.example", 0, NULL},
    {"x400:c=US;a= ;p=Corp;o=Exchange;s=Alice;", 0, NULL},
    {"EUM:1234;phone-context=dial.corp.example", 0, NULL},
    {"smtp2:alice@corp.example", 0, NULL}, /* another type */
    {"a:b@corp.example", 0, NULL},         /* looks typed: skipped */
    {"alice:x@corp.example", 0, NULL},
    {"\"a:b\"@corp.example", 1, "\"a:b\"@corp.example"},   /* ':' not after a type */
    {"a.b:c@corp.example", 1, "a.b:c@corp.example"},       /* '.' ends the type */
    {"abcdefghijklmnopq:x@y", 1, "abcdefghijklmnopq:x@y"}, /* 17 > BS_LDAP_TYPE_MAX */
    {"smtp", 1, "smtp"},                                   /* no ':' */
    {"smtp:", 1, ""},                                      /* empty: the engine rejects */
    {"", 1, ""},
};

static const struct {
    const char *name;
    int cut;
} ranges[] = {
    {"proxyAddresses", 0},
    {"proxyAddresses;range=0-1499", 1},
    {"proxyAddresses;Range=1500-2999", 1},
    {"proxyAddresses;range=0-*", 0},
    {"proxyAddresses;range=1500-*", 0},
    {"proxyAddresses;range=0-1499;binary", 1},
    {"proxyAddresses;range=0-*;binary", 0},
    {"mail;lang-en", 0},
    {"proxyAddresses;range=", 1},
};

int main(void)
{
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *v = values[i].value;
        size_t off = 99;
        int emit = value_address(v, strlen(v), &off);
        CHECK_EQ_INT(emit, values[i].emit);
        if (emit && values[i].emit)
            CHECK_EQ_STR(v + off, values[i].out);
        if (emit != values[i].emit)
            fprintf(stderr, "  value: %s\n", v);
    }
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        int cut = range_cut(ranges[i].name, strlen(ranges[i].name));
        CHECK_EQ_INT(cut, ranges[i].cut);
        if (cut != ranges[i].cut)
            fprintf(stderr, "  name: %s\n", ranges[i].name);
    }
    return check_summary();
}
