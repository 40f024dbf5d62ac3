/* SPDX-License-Identifier: Apache-2.0 */
/* RE2 syntax check unit tests: patterns RE2 (and Istio) accept, among them the
 * regexes of the repository's tests and examples and of Istio's documentation,
 * each of which must also compile with PCRE2 under the options the header
 * recommends; patterns refused, with the offset and reason; the limits (length,
 * repetition counts, nesting); and every prefix of every case, in a buffer of
 * exactly that size, so that a read past the end shows under ASan. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/re2syntax.h"
#include "tests/unit/check.h"

/* The compile options conf/re2syntax.h recommends, with the route matcher's
 * anchoring. */
#define RE_OPTS                                                                                    \
	(PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOLLAR_ENDONLY |                   \
	 PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_BACKSLASH_C)

static const char *const accepted[] = {
    /* tests/unit/test_router.c, tests/unit/test_conf.c */
    "/v[0-9]+/.*",
    "v1",
    ".*Firefox.*",
    "[0-9]+",
    "/item/[0-9]+",
    "a|b",
    /* Istio documentation and the issue */
    "^/api/v[0-9]+/.*",
    "(?i)/Prefix.*",
    "/(a|aa)+",
    "/(.*a){12}",
    "/api/v[0-9]+/users/[^/]+",
    "(?i)/static/.*\\.(css|js)",
    "^/static/.*\\.(css|js|png)$",
    "/productpage|/login|/logout",
    "^.*/v1/.*$",
    "^Bearer .+$",
    ".*Chrome.*",
    "^(?i)curl/.*",
    "\\/api\\/v1\\/.*",
    "[a-zA-Z0-9_-]+",
    "[^/]+\\.example\\.com",
    /* RE2 syntax */
    "(?P<id>[0-9]+)",
    "(?<id>[0-9]+)/(?P<rest>.*)",
    "(?:a|b)*?c+?d??e{2}?f{2,}?g{0,3}?",
    "(?i:ab)c(?-i)d(?ims-U:e)",
    "(?)a",
    "(?U)a+",
    "(?s).(?m)^a$",
    "\\Aabc\\z",
    "\\bword\\B",
    "\\d\\D\\s\\S\\w\\W",
    "[\\d\\s\\w]+[^\\D]",
    "[[:alpha:]][[:^digit:]][[:word:]][[:xdigit:]]",
    "[[:alpha:]\\W]",
    "\\pL\\pN\\p{Greek}\\p{^Greek}\\P{Lu}\\PN[\\p{Han}]\\p{Any}",
    "\\p{Zanabazar_Square}",
    "\\QC++ (really)\\E+",
    "\\Qno end",
    "a\\Q\\E*",
    "\\x41\\x{263a}\\x{10FFFF}\\x{0000000041}",
    "\\0\\07\\012\\08",
    "[\\12]",
    "\\n\\r\\t\\a\\f",
    "\\.\\-\\_\\%\\ \\<\\>\\/\\\\",
    "[]a]",
    "[^]a]",
    "[a-]",
    "[-a]",
    "[^-a]",
    "[\\d-]",
    "[--/]",
    "[\\]\\[\\-\\^]",
    "[[:alpha]]",
    "[[]",
    "a{1000}",
    "(a{10}){100}",
    "((a{10}){10}){10}",
    "(a{0}){1000}",
    "(?:a{2}|b{500}){2}",
    "x{0}",
    "x{0,0}",
    "x{2,}",
    "a{b}",
    "{",
    "}",
    "a{",
    "()*",
    "(|a)+",
    "a||b",
    "é+日本\\x{e9}",
    "(?i)é",
    "# not a comment",
};

struct refusal {
	const char *name;
	const char *pat;
	size_t len; /* 0: strlen(pat) */
	size_t off;
	const char *why; /* a substring of the reason */
};

static const struct refusal refused[] = {
    /* back-references and look-arounds */
    {"backref", "(a)\\1", 0, 3, "back-reference"},
    {"backref 9", "\\9", 0, 0, "back-reference"},
    {"class backref", "[\\1]", 0, 1, "back-reference"},
    {"lookahead", "(?=a)", 0, 0, "look-ahead (?="},
    {"neg lookahead", "a(?!b)", 0, 1, "look-ahead (?!"},
    {"lookbehind", "(?<=a)b", 0, 0, "look-behind (?<="},
    {"neg lookbehind", "(?<!a)b", 0, 0, "look-behind (?<!"},
    {"non-atomic lookahead", "(?*a)", 0, 0, "look-ahead (?*"},
    /* atomic and possessive */
    {"atomic", "(?>a+)b", 0, 0, "atomic"},
    {"possessive *+", "a*+", 0, 2, "possessive"},
    {"possessive ++", "xa++", 0, 3, "possessive"},
    {"possessive ?+", "a?+", 0, 2, "possessive"},
    {"possessive {n}+", "a{2}+", 0, 4, "possessive"},
    {"stacked", "a**", 0, 2, "cannot follow a quantifier"},
    {"stacked lazy", "a*?+", 0, 3, "cannot follow a quantifier"},
    {"stacked count", "a{2}{3}", 0, 4, "cannot follow a quantifier"},
    {"stacked across \\Q\\E", "a*\\Q\\E*", 0, 6, "cannot follow a quantifier"},
    /* recursion, subroutines, conditionals, callouts, comments, verbs */
    {"recursion", "a(?R)?", 0, 1, "recursion"},
    {"subroutine", "(a)(?1)", 0, 3, "subroutine"},
    {"subroutine +", "(?+1)(a)", 0, 0, "subroutine"},
    {"subroutine -", "(a)(?-1)", 0, 3, "subroutine"},
    {"named recursion", "(?P<n>a)(?&n)", 0, 8, "recursion"},
    {"python recursion", "(?P<n>a)(?P>n)", 0, 8, "recursion (?P>"},
    {"python backref", "(?P<n>a)(?P=n)", 0, 8, "back-reference (?P="},
    {"\\g", "(a)\\g1", 0, 3, "\\g"},
    {"\\g<>", "(a)\\g<1>", 0, 3, "\\g"},
    {"\\k", "(?<n>a)\\k<n>", 0, 7, "\\k"},
    {"conditional", "(a)?(?(1)b|c)", 0, 4, "conditional"},
    {"callout", "(?C1)a", 0, 0, "callout"},
    {"comment", "a(?#note)", 0, 1, "comment"},
    {"branch reset", "(?|(a)|(b))", 0, 0, "branch reset"},
    {"verb UTF", "(*UTF)a", 0, 0, "(*VERB)"},
    {"verb SKIP", "a(*SKIP)b", 0, 1, "(*VERB)"},
    {"quote name", "(?'n'a)", 0, 0, "(?'name'"},
    {"caret flags", "(?^i)a", 0, 0, "(?^"},
    /* flags */
    {"flag x", "(?x) a", 0, 2, "only i, m, s and U"},
    {"flag J", "(?iJ)a", 0, 3, "only i, m, s and U"},
    {"flag -", "(?-)a", 0, 3, "followed by a flag"},
    {"flag i-", "(?i-:a)", 0, 4, "followed by a flag"},
    {"flag --", "(?i-m-s)a", 0, 5, "two '-'"},
    {"flags open", "(?i", 0, 0, "unterminated"},
    {"(? open", "a(?", 0, 1, "unterminated"},
    /* escapes */
    {"\\Z", "a\\Z", 0, 1, "\\Z"},
    {"\\G", "\\Ga", 0, 0, "\\G"},
    {"\\K", "a\\Kb", 0, 1, "\\K"},
    {"\\R", "\\R", 0, 0, "\\R"},
    {"\\X", "\\X", 0, 0, "\\X"},
    {"\\h", "\\h", 0, 0, "horizontal"},
    {"\\H", "[\\H]", 0, 1, "horizontal"},
    {"\\V", "\\V", 0, 0, "\\V"},
    {"\\v", "a\\v", 0, 1, "vertical tab"},
    {"\\N", "\\N", 0, 0, "\\N"},
    {"\\e", "\\e", 0, 0, "\\e"},
    {"\\c", "\\cA", 0, 0, "\\cX"},
    {"\\o", "\\o{101}", 0, 0, "\\o"},
    {"\\u", "\\u0041", 0, 0, "case-changing"},
    {"\\L", "\\Labc\\E", 0, 0, "case-changing"},
    {"\\E alone", "a\\E", 0, 1, "\\E without \\Q"},
    {"\\C", "a\\C", 0, 1, "\\C"},
    {"\\y", "\\y", 0, 0, "unknown escape"},
    {"escaped non-ASCII", "\\é", 0, 0, "non-ASCII"},
    {"trailing backslash", "a\\", 0, 1, "trailing backslash"},
    {"octal \\12", "a\\12", 0, 1, "octal"},
    {"\\x one digit", "\\x4", 0, 0, "two hex digits"},
    {"\\x{}", "\\x{}", 0, 0, "hex digits"},
    {"\\x{ open", "\\x{41", 0, 0, "hex digits"},
    {"\\x above", "\\x{110000}", 0, 0, "above U+10FFFF"},
    {"\\x surrogate", "a\\x{D800}", 0, 1, "surrogates"},
    /* repetition */
    {"count 1001", "a{1001}", 0, 1, "above 1000"},
    {"count huge", "a{100000000}", 0, 1, "above 1000"},
    {"count order", "a{3,2}", 0, 1, "m < n"},
    {"nested product", "(a{100}){100}", 0, 8, "nested counted repetitions"},
    {"nested product 3", "((a{10}){10}){11}", 0, 13, "nested counted repetitions"},
    {"nested product min", "(a{2}){501,}", 0, 6, "nested counted repetitions"},
    {"literal {0", "a{01}", 0, 1, "literal {"},
    {"literal {,", "a{,3}", 0, 1, "literal {"},
    {"literal { space", "a{ 1}", 0, 1, "literal {"},
    {"nothing to repeat", "*a", 0, 0, "nothing to repeat"},
    {"nothing after |", "a|*b", 0, 2, "nothing to repeat"},
    {"nothing after (", "(+a)", 0, 1, "nothing to repeat"},
    {"count at start", "{2}", 0, 0, "nothing to repeat"},
    {"after ^", "^*", 0, 1, "assertion"},
    {"after \\b", "a\\b+", 0, 3, "assertion"},
    {"after $", "a$?", 0, 2, "assertion"},
    {"after flags", "a(?i)*", 0, 5, "flag group"},
    /* classes */
    {"class escape ends range", "[a-\\d]", 0, 3, "cannot end a range"},
    {"- after class escape", "[\\d-z]", 0, 3, "'-' in a class"},
    {"- after range", "[a-b-c]", 0, 4, "'-' in a class"},
    {"- after posix", "[[:alpha:]-z]", 0, 10, "'-' in a class"},
    {"range order", "x[z-a]", 0, 2, "out of order"},
    {"posix outside", "[:alpha:]", 0, 0, "inside brackets"},
    {"collating", "[[.a.]]", 0, 1, "collating"},
    {"equivalence", "[[=a=]]", 0, 1, "collating"},
    {"range to [:", "[!-[:alpha:]]", 0, 3, "range cannot end"},
    {"unknown posix", "[[:foo:]]", 0, 1, "unknown POSIX"},
    {"posix after \\W", "[\\W[:alpha:]]", 0, 3, "PCRE2 10.42"},
    {"posix after [:^", "[[:^digit:][:alpha:]]", 0, 11, "PCRE2 10.42"},
    {"[\\b]", "[\\b]", 0, 1, "backspace"},
    {"[\\Q", "[\\Q]\\E]", 0, 1, "\\Q"},
    {"[\\A", "[\\A]", 0, 1, "assertion"},
    {"empty class", "[]", 0, 0, "missing ]"},
    {"open class", "a[bc", 0, 1, "missing ]"},
    {"open range", "[a-", 0, 0, "missing ]"},
    /* Unicode classes */
    {"\\p under (?i)", "(?i)\\p{Lu}", 0, 4, "(?i)"},
    {"\\p under (?i:", "(?i:[\\pL])", 0, 5, "(?i)"},
    {"\\p Kawi", "\\p{Kawi}", 0, 0, "unknown Unicode class"},
    {"\\p lower case", "\\p{greek}", 0, 0, "unknown Unicode class"},
    {"\\p Cn", "\\p{Cn}", 0, 0, "unknown Unicode class"},
    {"\\p one letter", "\\pX", 0, 0, "unknown Unicode class"},
    {"\\p open", "\\p{Greek", 0, 0, "closing }"},
    {"\\p end", "a\\p", 0, 1, "class name"},
    /* groups */
    {"missing )", "a(b", 0, 1, "missing )"},
    {"missing ) inner", "((a)", 0, 0, "missing )"},
    {"unmatched )", "a)", 0, 1, "unmatched )"},
    {"name digit", "(?P<1a>x)", 0, 0, "starting with a digit"},
    {"name chars", "(?P<a-b>x)", 0, 0, "A-Z a-z 0-9 _"},
    {"name unicode", "(?P<é>x)", 0, 0, "A-Z a-z 0-9 _"},
    {"name empty", "(?P<>x)", 0, 0, "empty group name"},
    {"name open", "(?P<abc", 0, 0, "closing >"},
    {"name dup", "(?P<n>a)|(?<n>b)", 0, 9, "duplicate"},
    {"name 33", "(?<abcdefghijabcdefghijabcdefghijabc>x)", 0, 0, "longer than 32"},
    {"(?P bad", "(?Px)", 0, 0, "(?P"},
    /* bytes */
    {"empty", "", 0, 0, "empty"},
    {"NUL", "a\0b", 3, 1, "NUL"},
    {"bad UTF-8", "a\xff", 0, 1, "UTF-8"},
    {"overlong", "\xc0\x80", 0, 0, "UTF-8"},
    {"surrogate UTF-8", "a\xed\xa0\x80", 0, 1, "UTF-8"},
    {"truncated UTF-8", "a\xe6\x97", 0, 1, "UTF-8"},
};

static pcre2_code *compile(const char *pat, size_t len, int *err)
{
	PCRE2_SIZE off;
	pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
	pcre2_code *re;

	assert_non_null(cc);
	assert_int_equal(pcre2_set_newline(cc, PCRE2_NEWLINE_LF), 0);
	re = pcre2_compile((PCRE2_SPTR)pat, len, RE_OPTS, err, &off, cc);
	pcre2_compile_context_free(cc);
	return re;
}

static void test_accepted(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(accepted) / sizeof(accepted[0]); k++) {
		const char *p = accepted[k];
		size_t off = 99;
		const char *why = NULL;
		int rc = ism_re2_check(p, strlen(p), &off, &why);
		pcre2_code *re;
		int err = 0;

		CHECK(p, rc == 0, "refused at %zu: %s", off, why ? why : "?");
		CHECK(p, off == 99 && why == NULL, "outputs written on success");
		re = compile(p, strlen(p), &err);
		CHECK(p, re != NULL, "PCRE2 refuses it (error %d)", err);
		pcre2_code_free(re);
	}
}

static void test_refused(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
		const struct refusal *c = &refused[k];
		size_t len = c->len ? c->len : strlen(c->pat), off = 99;
		const char *why = NULL;
		int rc = ism_re2_check(c->pat, len, &off, &why);

		CHECK(c->name, rc == -EINVAL, "accepted \"%s\" (rc %d)", c->pat, rc);
		CHECK(c->name, off == c->off, "offset %zu, want %zu (%s)", off, c->off,
		      why ? why : "?");
		CHECK(c->name, why != NULL && strstr(why, c->why) != NULL,
		      "reason \"%s\" lacks \"%s\"", why ? why : "(null)", c->why);
	}
}

/* The pathological patterns of the issue are linear in RE2, so RE2 and
 * this check accept them: the bound on their cost is the match limit. */
static void test_pathological_accepted(void **state)
{
	(void)state;
	assert_int_equal(ism_re2_check("/(a|aa)+", 8, NULL, NULL), 0);
	assert_int_equal(ism_re2_check("/(.*a){12}", 10, NULL, NULL), 0);
	assert_int_equal(ism_re2_check("(a+)+$", 6, NULL, NULL), 0);
}

static void test_null_outputs(void **state)
{
	(void)state;
	assert_int_equal(ism_re2_check("(?=a)", 5, NULL, NULL), -EINVAL);
	assert_int_equal(ism_re2_check("a", 1, NULL, NULL), 0);
}

static void test_length_limit(void **state)
{
	char *p = malloc(ISM_RE2_MAX_LEN + 1);
	size_t off = 0;
	const char *why = NULL;

	(void)state;
	assert_non_null(p);
	memset(p, 'a', ISM_RE2_MAX_LEN + 1);
	assert_int_equal(ism_re2_check(p, ISM_RE2_MAX_LEN, NULL, NULL), 0);
	assert_int_equal(ism_re2_check(p, ISM_RE2_MAX_LEN + 1, &off, &why), -EINVAL);
	assert_int_equal(off, ISM_RE2_MAX_LEN);
	assert_non_null(strstr(why, "1024"));
	free(p);
}

/* depth groups "((...(a)...))", written into buf. */
static size_t nested(char *buf, int depth)
{
	size_t n = 0;

	for (int k = 0; k < depth; k++)
		buf[n++] = '(';
	buf[n++] = 'a';
	for (int k = 0; k < depth; k++)
		buf[n++] = ')';
	return n;
}

static void test_nesting_limit(void **state)
{
	char buf[2 * ISM_RE2_MAX_NEST + 8];
	size_t n, off = 0;
	const char *why = NULL;
	pcre2_code *re;
	int err = 0;

	(void)state;
	n = nested(buf, ISM_RE2_MAX_NEST);
	assert_int_equal(ism_re2_check(buf, n, NULL, NULL), 0);
	re = compile(buf, n, &err);
	assert_non_null(re);
	pcre2_code_free(re);
	n = nested(buf, ISM_RE2_MAX_NEST + 1);
	assert_int_equal(ism_re2_check(buf, n, &off, &why), -EINVAL);
	assert_int_equal(off, ISM_RE2_MAX_NEST);
	assert_non_null(strstr(why, "nested"));
}

/* Every prefix of every case, copied into a buffer of exactly its size:
 * the check must not read past it, and a refusal's offset lies inside. */
static void check_prefixes(const char *pat, size_t len)
{
	for (size_t n = 0; n <= len; n++) {
		char *p = malloc(n ? n : 1);
		size_t off = 0;
		const char *why = NULL;
		int rc;

		assert_non_null(p);
		memcpy(p, pat, n);
		rc = ism_re2_check(p, n, &off, &why);
		CHECK(pat, rc == 0 || rc == -EINVAL, "rc %d at prefix %zu", rc, n);
		if (rc < 0) {
			CHECK(pat, why != NULL && why[0] != '\0', "no reason at prefix %zu", n);
			CHECK(pat, off < n || (n == 0 && off == 0), "offset %zu beyond prefix %zu",
			      off, n);
		}
		free(p);
	}
}

static void test_prefixes(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(accepted) / sizeof(accepted[0]); k++)
		check_prefixes(accepted[k], strlen(accepted[k]));
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
		check_prefixes(refused[k].pat,
			       refused[k].len ? refused[k].len : strlen(refused[k].pat));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepted),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_pathological_accepted),
	    cmocka_unit_test(test_null_outputs),
	    cmocka_unit_test(test_length_limit),
	    cmocka_unit_test(test_nesting_limit),
	    cmocka_unit_test(test_prefixes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
