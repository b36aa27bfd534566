#!/usr/bin/perl
# The names qpsmtpd 0.94's uribl plugin asks about, for differential tests of qpsmtpd-tx's
# scanner (qpsmtpd_tx/uri_hosts.py): runs the installed plugin's own lookup_start on each
# message read from standard input (messages separated by "\0\n", each its body lines
# without the header) and prints, per message, its names joined by "|" on one line.
# Arguments: the plugin file, then whitelisted domains.
use strict;
use warnings;

package FakeTransaction;
sub new { my ($class, $lines) = @_; return bless {lines => $lines, i => 0}, $class }
sub body_resetpos { $_[0]{i} = 0; return 1 }
sub body_getline { my $self = shift; return $self->{lines}[$self->{i}++] }

package main;
my $file = shift @ARGV;
open(my $fh, '<', $file) or die "$file: $!";
my $code = do { local $/; <$fh> };
close $fh;
# the plugin's subs in a package of their own; log and qp are not needed to find names
eval "package UriblUnderTest; sub log {} sub qp {}\n#line 1 \"$file\"\n$code\n; 1" or die $@;
my $input = do { local $/; binmode STDIN; <STDIN> };
binmode STDOUT;
for my $message (split /\0\n/, $input) {
    # the body as qpsmtpd keeps it: from the empty line that ends the header
    my @lines = ("\n", map { "$_\n" } split /\n/, $message, -1);
    pop @lines if @lines > 1 && $lines[-1] eq "\n" && $message =~ /\n\z/;
    my $self = bless {whitelist_zones => {map { ($_ => 1) } @ARGV}}, 'UriblUnderTest';
    my @names;
    $self->lookup_start(FakeTransaction->new(\@lines), sub { push @names, $_[1]; return 1 });
    print join('|', @names), "\n";
}
