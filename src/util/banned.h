/* Calls that are easy to misuse are banned in Granary's own code. Using one
 * fails the build with an error naming it; docs/conventions.md lists the
 * replacement for each. Included last by util.h. */
#ifndef GRANARY_BANNED_H
#define GRANARY_BANNED_H

#define GR_BANNED(func) sorry_##func##_is_banned_in_granary

#undef strcpy
#define strcpy(x, y) GR_BANNED(strcpy)
#undef strcat
#define strcat(x, y) GR_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) GR_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) GR_BANNED(strncat)
#undef sprintf
#define sprintf(...) GR_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) GR_BANNED(vsprintf)
#undef gets
#define gets(x) GR_BANNED(gets)
#undef strtok
#define strtok(x, y) GR_BANNED(strtok)
#undef atoi
#define atoi(x) GR_BANNED(atoi)
#undef atol
#define atol(x) GR_BANNED(atol)
#undef gmtime
#define gmtime(t) GR_BANNED(gmtime)
#undef localtime
#define localtime(t) GR_BANNED(localtime)
#undef ctime
#define ctime(t) GR_BANNED(ctime)
#undef asctime
#define asctime(t) GR_BANNED(asctime)
#undef tmpnam
#define tmpnam(x) GR_BANNED(tmpnam)
#undef mktemp
#define mktemp(x) GR_BANNED(mktemp)
#undef system
#define system(x) GR_BANNED(system)

#endif
