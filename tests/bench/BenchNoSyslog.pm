# BenchNoSyslog.pm - lets Debian's postfwd2 run where no syslog daemon
# listens on /dev/log (containers, CI): scripts/bench loads it with
#   perl -T -I tests/bench -MBenchNoSyslog /usr/sbin/postfwd2 ...
# Net::Server dies when openlog fails; here openlog, setlogsock and closelog
# succeed and do nothing, and syslog appends the line to the file named by
# BENCH_POSTFWD_LOG (an absolute path), or drops it. The benchmark runs
# postfwd2 with --perfmon, so only start-up and errors are logged.
package BenchNoSyslog;
use strict;
use warnings;
use Sys::Syslog ();

my $file = ($ENV{BENCH_POSTFWD_LOG} // '') =~ m{^(/[\w./-]+)$} ? $1 : undef;

{
    no warnings 'redefine';
    *Sys::Syslog::openlog    = sub { 1 };
    *Sys::Syslog::setlogsock = sub { 1 };
    *Sys::Syslog::closelog   = sub { 1 };
    *Sys::Syslog::syslog     = sub {
        my ($prio, $fmt, @args) = @_;
        return 1 unless $file;
        if (open(my $fh, '>>', $file)) {
            printf $fh "%s: $fmt\n", $prio, @args;
            close $fh;
        }
        return 1;
    };
}

1;
