"""gen_users.py - the AD-shaped test directory: LDIF for slapadd and the
addresses a correct reader must emit for it.

    /usr/bin/python3 tests/ldap/gen_users.py USERS > data.ldif

Users are spread over DOMAINS; every user has a primary "SMTP:" and a
secondary "smtp:" proxyAddress, an "X500:" one and, one in three, a "SIP:"
one (neither may be emitted), and a plain mail value. One in ten is disabled
(userAccountControl bit 2 set: 514, 66050), the others have flags without
bit 2 (512, 66048, 544). A catch-all user holds "smtp:@dom3.example".
ou=DomainDnsZones is a referral object, so a subtree search gets a search
continuation reference, as from AD.
"""
import sys

BASE = "dc=corp,dc=example"
READER_DN = "cn=reader,ou=service," + BASE
READER_PASSWORD = "reader-secret"
DOMAINS = ("Dom1.Example", "dom2.example", "DOM3.example")
CATCH_ALL = "@dom3.example"
FILTER = "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
ENABLED = (512, 66048, 544)
DISABLED = (514, 66050)


def user(i):
    """(ldif text, proxyAddresses to emit, mail to emit) of user i"""
    dom = DOMAINS[i % len(DOMAINS)]
    disabled = i % 10 == 7
    flags = DISABLED[i % 2] if disabled else ENABLED[i % 3]
    primary, alias = f"User{i}@{dom}", f"alias.{i}@{dom}"
    lines = [f"dn: cn=user{i},ou=users,{BASE}", "objectClass: user", f"cn: user{i}",
             f"sAMAccountName: user{i}", f"mail: {primary}", f"userAccountControl: {flags}",
             f"proxyAddresses: SMTP:{primary}", f"proxyAddresses: smtp:{alias}",
             f"proxyAddresses: X500:/o=Corp/ou=Exchange/cn=Recipients/cn=user{i}"]
    if i % 3 == 0:
        lines.append(f"proxyAddresses: SIP:user{i}@{dom}")
    emitted = [] if disabled else [primary, alias]
    return "\n".join(lines) + "\n\n", emitted, [] if disabled else [primary]


def header():
    return (f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp\n\n"
            f"dn: ou=users,{BASE}\nobjectClass: organizationalUnit\nou: users\n\n"
            f"dn: ou=service,{BASE}\nobjectClass: organizationalUnit\nou: service\n\n"
            f"dn: {READER_DN}\nobjectClass: user\ncn: reader\nuserPassword: {READER_PASSWORD}\n\n"
            f"dn: cn=catchall,ou=users,{BASE}\nobjectClass: user\ncn: catchall\n"
            f"userAccountControl: 512\nproxyAddresses: smtp:{CATCH_ALL}\n\n"
            f"dn: ou=DomainDnsZones,{BASE}\nobjectClass: referral\nobjectClass: extensibleObject\n"
            f"ou: DomainDnsZones\nref: ldap://127.0.0.1:9/DC=DomainDnsZones,DC=corp,DC=example\n\n")


def write(out, n):
    """LDIF of n users to the file out; returns (proxyAddresses, mail) to emit"""
    proxies, mails = [CATCH_ALL], []
    out.write(header())
    for i in range(n):
        text, p, m = user(i)
        out.write(text)
        proxies += p
        mails += m
    return proxies, mails


if __name__ == "__main__":
    write(sys.stdout, int(sys.argv[1]))
