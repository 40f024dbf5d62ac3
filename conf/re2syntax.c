/* SPDX-License-Identifier: Apache-2.0 */
/* The RE2 syntax check: one pass over the pattern that follows RE2's own
 * parser (re2/parse.cc: Regexp::Parse, ParsePerlFlags, ParseEscape,
 * ParseCharClass, MaybeParseRepetition, PushRepetition) closely enough to
 * refuse what it refuses, and refuses in addition what Istio's validation
 * (Go's regexp) or PCRE2 would refuse or read otherwise. It builds no tree:
 * what the checks need of the nesting (flags to restore, the largest product
 * of counted repetitions inside a group) is kept on a fixed stack. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "conf/re2syntax.h"
#include "lib/ascii.h"
#include "lib/json.h"

/* Named groups a pattern of ISM_RE2_MAX_LEN bytes can hold: "(?<a>)" is 6. */
#define MAX_NAMES (ISM_RE2_MAX_LEN / 6 + 1)
/* PCRE2 refuses longer group names (MAX_NAME_SIZE in 10.42). */
#define MAX_NAME_LEN 32

/* What the item before the current position was, which decides whether a
 * quantifier may follow it. */
enum re2_last {
	LAST_NONE,   /* start, '(' or '|': nothing to repeat */
	LAST_ATOM,   /* a character, class, '.' or group */
	LAST_ASSERT, /* ^ $ \A \z \b \B */
	LAST_FLAGS,  /* (?i) and the like */
	LAST_QUANT,  /* a quantifier */
};

struct re2_frame {
	size_t open;  /* offset of the '(' */
	unsigned max; /* the enclosing group's largest product so far */
	bool fold;    /* (?i) outside the group */
};

struct re2_scan {
	const unsigned char *p;
	size_t len, i;
	size_t err_off;
	const char *why;
	bool fold; /* (?i) in force */
	enum re2_last last;
	bool last_lazy;	    /* the quantifier in LAST_QUANT ended in '?' */
	unsigned last_prod; /* product of counted repetitions in the last atom */
	unsigned max;	    /* largest such product in the current group */
	int depth;
	struct re2_frame stack[ISM_RE2_MAX_NEST];
	int n_names;
	uint16_t name_off[MAX_NAMES], name_len[MAX_NAMES];
};

/* The Unicode class names that RE2 (doc/syntax.txt) and PCRE2 10.42 both
 * know: general categories and scripts, exact spelling. RE2 also lists Kawi
 * and Nag_Mundari (Unicode 15), unknown to PCRE2 10.42 (Unicode 14). */
static const char *const unicode_names[] = {
    "Any",
    "C",
    "Cc",
    "Cf",
    "Co",
    "Cs",
    "L",
    "Ll",
    "Lm",
    "Lo",
    "Lt",
    "Lu",
    "M",
    "Mc",
    "Me",
    "Mn",
    "N",
    "Nd",
    "Nl",
    "No",
    "P",
    "Pc",
    "Pd",
    "Pe",
    "Pf",
    "Pi",
    "Po",
    "Ps",
    "S",
    "Sc",
    "Sk",
    "Sm",
    "So",
    "Z",
    "Zl",
    "Zp",
    "Zs",
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cypro_Minoan",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Old_Uyghur",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangsa",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Toto",
    "Ugaritic",
    "Vai",
    "Vithkuqi",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
};

/* RE2's [[:name:]] classes (all ASCII); PCRE2 knows the same names. */
static const char *const posix_names[] = {
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph",
    "lower", "print", "punct", "space", "upper", "word",  "xdigit",
};

static int fail(struct re2_scan *s, size_t off, const char *why)
{
	s->err_off = off;
	s->why = why;
	return -EINVAL;
}

static bool at(const struct re2_scan *s, size_t j, unsigned char c)
{
	return j < s->len && s->p[j] == c;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_octal(unsigned char c)
{
	return c >= '0' && c <= '7';
}

static bool is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool in_list(const char *const *list, size_t n, const unsigned char *name, size_t len)
{
	for (size_t k = 0; k < n; k++)
		if (strlen(list[k]) == len && memcmp(list[k], name, len) == 0)
			return true;
	return false;
}

/* The character at s->i, which the caller knows is not special. */
static uint32_t next_char(struct re2_scan *s)
{
	uint32_t c = 0;

	/* The whole pattern was checked to be UTF-8 before the scan. */
	s->i += ism_utf8_decode(s->p + s->i, s->len - s->i, &c);
	return c;
}

/* --- escapes --- */

/* Why RE2 (or PCRE2, or Istio) refuses the escape \c, for the letters that
 * Perl or PCRE2 give a meaning; NULL for the others. */
static const char *escape_refusal(unsigned char c, bool in_class)
{
	switch (c) {
	case 'g':
		return "\\g (back-reference or subroutine call) is not supported by RE2";
	case 'k':
		return "\\k (named back-reference) is not supported by RE2";
	case 'K':
		return "\\K (reset match start) is not supported by RE2";
	case 'G':
		return "\\G is not supported by RE2";
	case 'Z':
		return "\\Z is not supported by RE2 (write \\z or $)";
	case 'R':
		return "\\R (line break) is not supported by RE2";
	case 'X':
		return "\\X (extended grapheme cluster) is not supported by RE2";
	case 'h':
	case 'H':
		return "\\h and \\H (horizontal space) are not supported by RE2";
	case 'V':
		return "\\V (not vertical space) is not supported by RE2";
	case 'v':
		return "\\v is a vertical tab in RE2 but any vertical space in PCRE2 (write \\x0B)";
	case 'N':
		return "\\N is not supported by RE2";
	case 'e':
		return "\\e is not supported by RE2 (write \\x1B)";
	case 'c':
		return "\\cX (control character) is not supported by RE2 (write \\xHH)";
	case 'o':
		return "\\o{...} is not supported by RE2 (write \\x{...})";
	case 'l':
	case 'L':
	case 'u':
	case 'U':
		return "case-changing escapes \\l \\L \\u \\U are not supported by RE2";
	case 'E':
		return "\\E without \\Q is not supported by RE2";
	case 'C':
		return "\\C (any byte) is refused by Istio (Go's regexp) and can split a UTF-8 "
		       "character";
	case 'Q':
		return in_class ? "\\Q...\\E inside a class is not supported by RE2" : NULL;
	case 'b':
		return in_class ? "[\\b] (backspace) is not supported by RE2 (write \\x08)" : NULL;
	case 'A':
	case 'z':
	case 'B':
		return in_class ? "an assertion cannot be in a class" : NULL;
	default:
		return NULL;
	}
}

/* \x41 or \x{41}: RE2 wants exactly two hex digits, or one or more in braces;
 * PCRE2 in UTF mode refuses surrogates. s->i is at the backslash. */
static int parse_hex(struct re2_scan *s, uint32_t *cp)
{
	size_t start = s->i, j = s->i + 2;
	uint32_t v = 0;

	if (at(s, j, '{')) {
		size_t digits = 0;

		for (j++; j < s->len && ism_hexval(s->p[j]) >= 0; j++, digits++) {
			v = v * 16 + (uint32_t)ism_hexval(s->p[j]);
			if (v > 0x10FFFF)
				return fail(s, start, "\\x{...} above U+10FFFF");
		}
		if (digits == 0 || !at(s, j, '}'))
			return fail(s, start, "\\x{...} needs hex digits and a closing }");
		j++;
	} else {
		if (j + 1 >= s->len || ism_hexval(s->p[j]) < 0 || ism_hexval(s->p[j + 1]) < 0)
			return fail(s, start, "\\x needs exactly two hex digits or \\x{...} (RE2)");
		v = (uint32_t)(ism_hexval(s->p[j]) * 16 + ism_hexval(s->p[j + 1]));
		j += 2;
	}
	if (v >= 0xD800 && v <= 0xDFFF)
		return fail(s, start, "\\x{D800}-\\x{DFFF} (surrogates) are refused by PCRE2");
	*cp = v;
	s->i = j;
	return 0;
}

/* An escape that stands for one character (ParseEscape in RE2), at s->i. */
static int parse_escape_char(struct re2_scan *s, bool in_class, uint32_t *cp)
{
	size_t start = s->i;
	unsigned char c;
	const char *why;

	if (start + 1 >= s->len)
		return fail(s, start, "trailing backslash");
	c = s->p[start + 1];
	if (c >= 0x80)
		return fail(s, start, "an escaped non-ASCII character is not supported by RE2");
	if (!is_alnum(c)) {
		/* RE2 and PCRE2 both read an escaped ASCII punctuation character
		 * (and \_, which RE2 allows) as itself. */
		*cp = c;
		s->i += 2;
		return 0;
	}
	if (c >= '1' && c <= '9' && !(c <= '7' && start + 2 < s->len && is_octal(s->p[start + 2])))
		return fail(s, start, "back-reference \\N is not supported by RE2");
	if (is_octal(c)) {
		/* RE2: \0, or a digit and up to two more octal digits. PCRE2
		 * reads \1nn..\7nn outside a class as a back-reference when the
		 * pattern has that many groups; \0nn and classes are octal in both. */
		size_t j = start + 2;
		uint32_t v = c - '0';

		if (c != '0' && !in_class)
			return fail(s, start,
				    "octal escape \\NNN (PCRE2 may read a back-reference): write "
				    "\\x{...} or \\0NN");
		for (int k = 0; k < 2 && j < s->len && is_octal(s->p[j]); k++, j++)
			v = v * 8 + (uint32_t)(s->p[j] - '0');
		*cp = v;
		s->i = j;
		return 0;
	}
	switch (c) {
	case 'x':
		return parse_hex(s, cp);
	case 'n':
		*cp = '\n';
		break;
	case 'r':
		*cp = '\r';
		break;
	case 't':
		*cp = '\t';
		break;
	case 'a':
		*cp = '\a';
		break;
	case 'f':
		*cp = '\f';
		break;
	default:
		why = escape_refusal(c, in_class);
		return fail(s, start,
			    why ? why : "unknown escape (RE2 refuses letters it does not define)");
	}
	s->i += 2;
	return 0;
}

/* \pL, \p{Greek}, \p{^Greek}, \PL, at s->i. */
static int parse_unicode_class(struct re2_scan *s)
{
	size_t start = s->i, j = s->i + 2, name, end;

	/* RE2 folds the class under (?i) (AddUGroup with FoldCase): (?i)\p{Lu}
	 * matches lower case too. PCRE2 never folds \p: "\p{Lu} always matches
	 * only upper case letters". */
	if (s->fold)
		return fail(s, start,
			    "\\p{...} under (?i): RE2 also matches the other case, PCRE2 "
			    "does not");
	if (j >= s->len)
		return fail(s, start, "\\p needs a class name");
	if (s->p[j] == '{') {
		name = j + 1;
		for (end = name; end < s->len && s->p[end] != '}'; end++)
			;
		if (end >= s->len)
			return fail(s, start, "\\p{ without a closing }");
		s->i = end + 1;
	} else {
		s->i = j;
		name = j;
		(void)next_char(s);
		end = s->i;
	}
	if (name < end && s->p[name] == '^')
		name++;
	if (!in_list(unicode_names, sizeof(unicode_names) / sizeof(unicode_names[0]), s->p + name,
		     end - name))
		return fail(s, start,
			    "unknown Unicode class (RE2 knows categories such as L, Lu, "
			    "Nd and scripts such as Greek)");
	return 0;
}

/* --- character classes --- */

/* Whether PCRE2 reads "[" term ... term "]" starting at j as POSIX syntax:
 * it looks for term followed by ']' before any unescaped ']' or another
 * "[" term. */
static bool pcre2_posix_syntax(const struct re2_scan *s, size_t j, unsigned char term)
{
	for (size_t k = j + 2; k < s->len; k++) {
		if (s->p[k] == '\\' && (at(s, k + 1, ']') || at(s, k + 1, '\\')))
			k++;
		else if ((s->p[k] == '[' && at(s, k + 1, term)) || s->p[k] == ']')
			return false;
		else if (s->p[k] == term && at(s, k + 1, ']'))
			return true;
	}
	return false;
}

/* At "[:" inside a class: RE2 looks for the next ":]" anywhere after it and
 * refuses an unknown name; without one the '[' is a literal. Returns 1 when a
 * POSIX class was consumed, 0 when the '[' is a literal. neg_before: the
 * class already holds \D, \S, \W or a [:^name:]. */
static int parse_posix_class(struct re2_scan *s, bool *neg_before)
{
	size_t start = s->i, k, name;
	bool negated;

	for (k = start + 2; k + 1 < s->len && !(s->p[k] == ':' && s->p[k + 1] == ']'); k++)
		;
	if (k + 1 >= s->len)
		return 0;
	name = start + 2;
	negated = name < k && s->p[name] == '^';
	if (negated)
		name++;
	if (!in_list(posix_names, sizeof(posix_names) / sizeof(posix_names[0]), s->p + name,
		     k - name))
		return fail(s, start, "unknown POSIX class name in [[:name:]]");
	/* PCRE2 10.42 in UTF mode without UCP gets characters above U+00FF
	 * wrong in such a class: [\W[:alpha:]] does not match U+03B1, which
	 * RE2's (and PCRE2's own [[:alpha:]\W]) does. */
	if (!negated && *neg_before)
		return fail(s, start,
			    "[:name:] after \\D \\S \\W or [:^name:] in one class: PCRE2 10.42 "
			    "misreads it (put [:name:] first)");
	*neg_before = *neg_before || negated;
	s->i = k + 2;
	return 1;
}

/* One character of a class (a literal or an escape), at s->i. */
static int parse_class_char(struct re2_scan *s, size_t class_start, uint32_t *cp)
{
	if (s->i >= s->len)
		return fail(s, class_start, "missing ] to close the class");
	if (s->p[s->i] == '\\')
		return parse_escape_char(s, true, cp);
	*cp = next_char(s);
	return 0;
}

static bool class_escape_at(const struct re2_scan *s, size_t j)
{
	return at(s, j, '\\') && j + 1 < s->len && strchr("dDsSwWpP", s->p[j + 1]) != NULL &&
	       s->p[j + 1] != '\0';
}

/* One element of a class at s->i: a named class, a character or a range.
 * neg_before: as for parse_posix_class. */
static int parse_class_item(struct re2_scan *s, size_t class_start, bool *neg_before)
{
	size_t start = s->i;
	uint32_t lo, hi;
	int rc;

	if (at(s, start, '[') && at(s, start + 1, ':')) {
		rc = parse_posix_class(s, neg_before);
		if (rc != 0)
			return rc < 0 ? rc : 0;
	}
	if (at(s, start, '[') && (at(s, start + 1, '.') || at(s, start + 1, '=')) &&
	    pcre2_posix_syntax(s, start, s->p[start + 1]))
		return fail(s, start, "POSIX collating elements [. .] and [= =] are not supported");
	if (at(s, start, '\\') && (at(s, start + 1, 'p') || at(s, start + 1, 'P')))
		return parse_unicode_class(s);
	if (class_escape_at(s, start)) {
		*neg_before = *neg_before || strchr("DSW", s->p[start + 1]) != NULL;
		s->i += 2;
		return 0;
	}
	rc = parse_class_char(s, class_start, &lo);
	if (rc < 0)
		return rc;
	/* RE2's ParseCCRange: "x-y" unless the '-' is followed by ']'. */
	if (!(at(s, s->i, '-') && s->i + 1 < s->len && s->p[s->i + 1] != ']'))
		return 0;
	s->i++;
	if (class_escape_at(s, s->i))
		return fail(s, s->i, "a class escape cannot end a range");
	if (at(s, s->i, '[') &&
	    (at(s, s->i + 1, ':') || at(s, s->i + 1, '.') || at(s, s->i + 1, '=')))
		return fail(s, s->i,
			    "a range cannot end in [: [. or [= (PCRE2 reads POSIX syntax)");
	rc = parse_class_char(s, class_start, &hi);
	if (rc < 0)
		return rc;
	if (hi < lo)
		return fail(s, start, "character range out of order");
	return 0;
}

/* A class [...] at s->i. */
static int parse_class(struct re2_scan *s)
{
	size_t start = s->i;
	bool first = true, neg_before = false;

	/* PCRE2 refuses [:alpha:], [.a.] and [=a=] outside a class. */
	if ((at(s, start + 1, ':') || at(s, start + 1, '.') || at(s, start + 1, '=')) &&
	    pcre2_posix_syntax(s, start, s->p[start + 1]))
		return fail(s, start, "[:name:] is a class only inside brackets: write [[:name:]]");
	s->i++;
	if (at(s, s->i, '^'))
		s->i++;
	for (;;) {
		int rc;

		if (s->i >= s->len)
			return fail(s, start, "missing ] to close the class");
		if (s->p[s->i] == ']' && !first)
			break;
		/* RE2 (with Perl syntax) takes a '-' anywhere as a literal;
		 * PCRE2 refuses one after a class such as \d. Only the places
		 * where both agree are accepted. */
		if (s->p[s->i] == '-' && !first && s->i + 1 < s->len && s->p[s->i + 1] != ']')
			return fail(
			    s, s->i,
			    "a '-' in a class must be first, last or in a range (write \\-)");
		first = false;
		rc = parse_class_item(s, start, &neg_before);
		if (rc < 0)
			return rc;
	}
	s->i++;
	return 0;
}

/* --- groups --- */

static int push_group(struct re2_scan *s, size_t open)
{
	struct re2_frame *f;

	if (s->depth >= ISM_RE2_MAX_NEST)
		return fail(s, open, "groups nested too deeply (PCRE2's limit)");
	f = &s->stack[s->depth++];
	f->open = open;
	f->max = s->max;
	f->fold = s->fold;
	s->max = 1;
	s->last = LAST_NONE;
	return 0;
}

static int pop_group(struct re2_scan *s)
{
	const struct re2_frame *f;
	unsigned inner = s->max;

	if (s->depth == 0)
		return fail(s, s->i, "unmatched )");
	f = &s->stack[--s->depth];
	s->fold = f->fold;
	s->max = f->max > inner ? f->max : inner;
	s->last = LAST_ATOM;
	s->last_prod = inner;
	s->i++;
	return 0;
}

/* (?P<name>re) or (?<name>re): s->i at '(', name at name_start. Go's regexp
 * takes [A-Za-z0-9_]+ (RE2 also Unicode letters); PCRE2 wants no leading
 * digit, at most 32 characters and no duplicates. */
static int parse_named_group(struct re2_scan *s, size_t name_start)
{
	size_t open = s->i, end;

	for (end = name_start; end < s->len && s->p[end] != '>'; end++)
		;
	if (end >= s->len)
		return fail(s, open, "named group without a closing >");
	if (end == name_start)
		return fail(s, open, "empty group name");
	for (size_t k = name_start; k < end; k++)
		if (!is_alnum(s->p[k]) && s->p[k] != '_')
			return fail(s, open, "a group name takes only A-Z a-z 0-9 _ (Istio)");
	if (is_digit(s->p[name_start]))
		return fail(s, open, "a group name starting with a digit is refused by PCRE2");
	if (end - name_start > MAX_NAME_LEN)
		return fail(s, open, "a group name longer than 32 characters is refused by PCRE2");
	for (int k = 0; k < s->n_names; k++)
		if (s->name_len[k] == end - name_start &&
		    memcmp(s->p + s->name_off[k], s->p + name_start, end - name_start) == 0)
			return fail(s, open, "duplicate group name (PCRE2 refuses it)");
	if (s->n_names < MAX_NAMES) {
		s->name_off[s->n_names] = (uint16_t)name_start;
		s->name_len[s->n_names] = (uint16_t)(end - name_start);
		s->n_names++;
	}
	s->i = end + 1;
	return push_group(s, open);
}

/* Flags (?imsU-imsU) or (?imsU-imsU:re), as RE2's ParsePerlFlags: s->i at
 * '('. */
static int parse_flags(struct re2_scan *s)
{
	size_t open = s->i, j = s->i + 2;
	bool negated = false, saw = false, fold = s->fold;

	for (;; j++) {
		if (j >= s->len)
			return fail(s, open, "unterminated (?");
		switch (s->p[j]) {
		case 'i':
			fold = !negated;
			saw = true;
			break;
		case 'm':
		case 's':
		case 'U':
			saw = true;
			break;
		case '-':
			if (negated)
				return fail(s, j, "two '-' in a flag group");
			negated = true;
			saw = false;
			break;
		case ':':
		case ')':
			if (negated && !saw)
				return fail(s, j, "'-' must be followed by a flag");
			s->i = j + 1;
			if (s->p[j] == ')') {
				s->fold = fold;
				s->last = LAST_FLAGS;
				return 0;
			}
			if (push_group(s, open) < 0)
				return -EINVAL;
			s->fold = fold;
			return 0;
		default:
			return fail(s, j, "unsupported flag: RE2 has only i, m, s and U");
		}
	}
}

/* Why RE2 refuses the group "(?" + c (+ d); NULL when it is not one of
 * PCRE2's or Perl's extensions. */
static const char *group_refusal(unsigned char c, int d)
{
	switch (c) {
	case '=':
		return "look-ahead (?= is not supported by RE2";
	case '!':
		return "negative look-ahead (?! is not supported by RE2";
	case '<':
		if (d == '=')
			return "look-behind (?<= is not supported by RE2";
		if (d == '!')
			return "negative look-behind (?<! is not supported by RE2";
		return NULL;
	case '*':
		return "non-atomic look-ahead (?* is not supported by RE2";
	case '>':
		return "atomic group (?> is not supported by RE2";
	case '#':
		return "comment (?# is not supported by RE2";
	case '|':
		return "branch reset (?| is not supported by RE2";
	case '(':
		return "conditional (?( is not supported by RE2";
	case 'C':
		return "callout (?C is not supported by RE2";
	case 'R':
	case '&':
		return "recursion (?R (?& is not supported by RE2";
	case '+':
	case '0' ... '9':
		return "recursion or subroutine call (?N is not supported by RE2";
	case '-':
		return d >= '0' && d <= '9' ? "subroutine call (?-N is not supported by RE2" : NULL;
	case '\'':
		return "(?'name' groups are not supported by RE2 (write (?P<name>re))";
	case '^':
		return "(?^ is not supported by RE2";
	case 'P':
		if (d == '=')
			return "named back-reference (?P=name) is not supported by RE2";
		if (d == '>')
			return "recursion (?P>name) is not supported by RE2";
		return d == '<' ? NULL : "unsupported (?P construct";
	default:
		return NULL;
	}
}

/* A group opening at s->i ('('). */
static int parse_group(struct re2_scan *s)
{
	size_t open = s->i;
	int c, d;
	const char *why;

	if (at(s, open + 1, '*'))
		return fail(s, open, "(*VERB) such as (*UTF) or (*SKIP) is not supported by RE2");
	if (!at(s, open + 1, '?')) {
		s->i++;
		return push_group(s, open);
	}
	c = open + 2 < s->len ? s->p[open + 2] : -1;
	d = open + 3 < s->len ? s->p[open + 3] : -1;
	if (c < 0)
		return fail(s, open, "unterminated (?");
	why = group_refusal((unsigned char)c, d);
	if (why)
		return fail(s, open, why);
	if (c == 'P')
		return parse_named_group(s, open + 4);
	if (c == '<')
		return parse_named_group(s, open + 3);
	return parse_flags(s);
}

/* --- repetition --- */

/* RE2's ParseInteger: digits without a leading zero, below 10^8. */
static bool parse_count(struct re2_scan *s, size_t *j, int *n)
{
	int v = 0;

	if (*j >= s->len || !is_digit(s->p[*j]))
		return false;
	if (s->p[*j] == '0' && *j + 1 < s->len && is_digit(s->p[*j + 1]))
		return false;
	for (; *j < s->len && is_digit(s->p[*j]); (*j)++) {
		if (v >= 100000000)
			return false;
		v = v * 10 + (s->p[*j] - '0');
	}
	*n = v;
	return true;
}

/* RE2's MaybeParseRepetition: {n}, {n,} or {n,m} at s->i; max -1 for none. */
static bool parse_braces(struct re2_scan *s, int *min, int *max, size_t *end)
{
	size_t j = s->i + 1;

	if (!parse_count(s, &j, min) || j >= s->len)
		return false;
	if (s->p[j] == ',') {
		j++;
		if (j >= s->len)
			return false;
		if (s->p[j] == '}')
			*max = -1;
		else if (!parse_count(s, &j, max))
			return false;
	} else {
		*max = *min;
	}
	if (!at(s, j, '}'))
		return false;
	*end = j + 1;
	return true;
}

/* A quantifier at s->i (*, +, ? or a counted {..} ending at end), with the
 * count m (max, or min when unbounded; 0 for * + ?). */
static int quantify(struct re2_scan *s, size_t end, int m)
{
	size_t q = s->i;

	switch (s->last) {
	case LAST_NONE:
		return fail(s, q, "quantifier with nothing to repeat");
	case LAST_ASSERT:
		return fail(s, q,
			    "quantifier after an assertion such as ^ or \\b (PCRE2 refuses it)");
	case LAST_FLAGS:
		return fail(s, q, "quantifier after a flag group such as (?i) (PCRE2 refuses it)");
	case LAST_QUANT:
		if (s->p[q] == '+' && !s->last_lazy)
			return fail(
			    s, q, "possessive quantifier (*+ ++ ?+ {n}+) is not supported by RE2");
		return fail(s, q, "a quantifier cannot follow a quantifier (RE2)");
	case LAST_ATOM:
		break;
	}
	/* RE2's RepetitionWalker: the counts of nested {n,m} multiply (a
	 * count of 0 is skipped) and the product may not exceed 1000. */
	if (m > 0) {
		unsigned long prod = (unsigned long)s->last_prod * (unsigned)m;

		if (prod > ISM_RE2_MAX_REPEAT)
			return fail(s, q, "nested counted repetitions exceed 1000 (RE2's limit)");
		s->last_prod = (unsigned)prod;
		if (s->last_prod > s->max)
			s->max = s->last_prod;
	}
	s->i = end;
	s->last_lazy = at(s, s->i, '?');
	if (s->last_lazy)
		s->i++;
	s->last = LAST_QUANT;
	return 0;
}

/* '{' at s->i: a counted repetition, or a literal '{' as RE2 reads it. */
static int parse_brace(struct re2_scan *s)
{
	size_t q = s->i, end;
	int min, max;

	if (!parse_braces(s, &min, &max, &end)) {
		unsigned char n = q + 1 < s->len ? s->p[q + 1] : 'x';

		/* RE2 reads "{01}", "{,3}", "{ 1}" and "{100000000}" as
		 * text; PCRE2 (or a later one: 10.43 takes {,n} and spaces)
		 * reads a quantifier or refuses them. */
		if (is_digit(n) || n == ',' || n == ' ' || n == '\t')
			return fail(s, q,
				    "a literal { before a digit, ',' or space may be read as a "
				    "quantifier by PCRE2 (write \\{)");
		s->i++;
		s->last = LAST_ATOM;
		s->last_prod = 1;
		return 0;
	}
	if (min > ISM_RE2_MAX_REPEAT || max > ISM_RE2_MAX_REPEAT)
		return fail(s, q, "repetition count above 1000 (RE2's limit)");
	if (max >= 0 && max < min)
		return fail(s, q, "repetition {n,m} with m < n");
	return quantify(s, end, max >= 0 ? max : min);
}

/* --- the pattern --- */

static void atom(struct re2_scan *s)
{
	s->last = LAST_ATOM;
	s->last_prod = 1;
}

/* A backslash outside a class, at s->i. */
static int parse_escape(struct re2_scan *s)
{
	unsigned char c = s->i + 1 < s->len ? s->p[s->i + 1] : 0;
	uint32_t cp;
	int rc;

	switch (c) {
	case 'A':
	case 'z':
	case 'b':
	case 'B':
		s->i += 2;
		s->last = LAST_ASSERT;
		return 0;
	case 'Q': {
		/* \Q...\E (or to the end) is literal text in both. */
		size_t j = s->i + 2;

		while (j < s->len && !(s->p[j] == '\\' && at(s, j + 1, 'E')))
			j++;
		if (j > s->i + 2)
			atom(s);
		s->i = j < s->len ? j + 2 : j;
		return 0;
	}
	case 'p':
	case 'P':
		rc = parse_unicode_class(s);
		break;
	case 'd':
	case 'D':
	case 's':
	case 'S':
	case 'w':
	case 'W':
		s->i += 2;
		rc = 0;
		break;
	default:
		rc = parse_escape_char(s, false, &cp);
		break;
	}
	if (rc == 0)
		atom(s);
	return rc;
}

static int parse_one(struct re2_scan *s)
{
	switch (s->p[s->i]) {
	case '(':
		return parse_group(s);
	case ')':
		return pop_group(s);
	case '|':
		s->i++;
		s->last = LAST_NONE;
		return 0;
	case '^':
	case '$':
		s->i++;
		s->last = LAST_ASSERT;
		return 0;
	case '[':
		if (parse_class(s) < 0)
			return -EINVAL;
		atom(s);
		return 0;
	case '*':
	case '+':
	case '?':
		return quantify(s, s->i + 1, 0);
	case '{':
		return parse_brace(s);
	case '\\':
		return parse_escape(s);
	default:
		(void)next_char(s);
		atom(s);
		return 0;
	}
}

/* Istio's and isthmus's own limits, and UTF-8, before the syntax. */
static int check_bytes(struct re2_scan *s)
{
	if (s->len == 0)
		return fail(s, 0, "empty regex (Istio refuses it)");
	if (s->len > ISM_RE2_MAX_LEN)
		return fail(s, ISM_RE2_MAX_LEN, "regex longer than 1024 bytes (Istio's limit)");
	for (size_t j = 0; j < s->len;) {
		uint32_t c;
		size_t n;

		if (s->p[j] == '\0')
			return fail(s, j, "NUL byte in the regex (write \\x00)");
		n = ism_utf8_decode(s->p + j, s->len - j, &c);
		if (n == 0)
			return fail(s, j, "invalid UTF-8");
		j += n;
	}
	return 0;
}

int ism_re2_check(const char *pat, size_t len, size_t *err_off, const char **why)
{
	struct re2_scan s;
	int rc;

	memset(&s, 0, sizeof(s));
	s.p = (const unsigned char *)pat;
	s.len = len;
	s.max = 1;
	s.last_prod = 1;
	rc = check_bytes(&s);
	while (rc == 0 && s.i < s.len)
		rc = parse_one(&s);
	if (rc == 0 && s.depth > 0)
		rc = fail(&s, s.stack[s.depth - 1].open, "missing ) to close the group");
	if (rc < 0) {
		if (err_off)
			*err_off = s.err_off;
		if (why)
			*why = s.why;
	}
	return rc;
}

pcre2_code *ism_re2_compile(const char *pat, size_t len, bool anchored, pcre2_compile_context *cctx,
			    int *err, size_t *off)
{
	PCRE2_SIZE o = 0;
	pcre2_code *re;

	pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
	re =
	    pcre2_compile((PCRE2_SPTR)pat, len,
			  (anchored ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0) | PCRE2_UTF |
			      PCRE2_DOLLAR_ENDONLY | PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_BACKSLASH_C,
			  err, &o, cctx);
	*off = (size_t)o;
	return re;
}
